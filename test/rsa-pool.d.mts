/** Types of test/rsa-pool.mjs (plain JavaScript, so that child processes load it before tsx). */
export declare const POOL_FILE: string;
export declare const POOL_SIZE: number;
export declare const CLAIMS_ENV: string;
export declare function ensurePool(): Promise<void>;
export declare function usePool(): void;
export declare function poolKeyCount(): number;
