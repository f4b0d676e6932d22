/** Types of launch/launch.mjs (plain JS: it runs before tsx is loaded). */
export declare const BUNDLE_DIR: string;
export declare const ENTRIES: { readonly pcd: string; readonly child: string; readonly worker: string; readonly 'reverse-worker': string };
export type EntryName = keyof typeof ENTRIES;
export declare function bundled(name: EntryName): string | undefined;
export declare function bundledIn(dir: string, root: string, name: string): string | undefined;
export declare function launch(name: EntryName): Promise<void>;
export declare function entryOf(url: string): EntryName | undefined;
