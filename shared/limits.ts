/**
 * Size limits of the protocol. The server enforces every one of them before
 * anything reaches the crypto or the store; the client splits batches so it
 * never exceeds them.
 */
export const LIMITS = {
  /** Largest request body the server reads, in bytes (MessagePack or JSON). */
  maxBodyBytes: 512 * 1024,
  /** Numbers, hashes or blinded elements in one lookup/evaluate request. */
  maxBatch: 4096,
  /** Characters of one number as sent to the plain design or the admin API. */
  maxNumberLength: 64,
  /** Characters of an email address. */
  maxEmailLength: 254,
  /** Numbers one account may register. */
  maxNumbersPerAccount: 16,
  /** Distinct capability names one account may list. */
  maxCapabilities: 8,
  /** Largest bucketBits a server accepts (2^24 buckets). */
  maxBucketBits: 24,
  /** Largest reply the client reads, in bytes (a full-directory bucket can be large). */
  maxReplyBytes: 1024 * 1024 * 1024,
} as const;
