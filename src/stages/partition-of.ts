import { encodeToken, fnv1a32 } from "../stream/subjects.ts";

/**
 * The partition rule of src/stream/subjects.ts (FNV-1a over the tokens' UTF-8 bytes, as nats-server's
 * `{{partition(P,…)}}` hashes them), computed on the hot path without the byte buffer `fnv1a32` allocates:
 * over the characters when they are ASCII (then character = byte), else by `fnv1a32` itself. It runs about
 * four times per order (intake check, line request, the ledger's check, the answer's target). The unit test
 * compares it with `partitionOfTokens` over generated ids.
 */

const offsetBasis = 0x811c9dc5;
const prime = 0x01000193;
/** `.` joins an order key's two tokens; encoded tokens never contain it, and the server hashes them joined. */
const dot = 0x2e;

/** FNV-1a of `text`'s characters, skipping `.`; null when one is not ASCII. */
function fnvAscii(text: string): number | null {
  let hash = offsetBasis;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return null;
    if (c === dot) continue;
    hash = Math.imul(hash ^ c, prime);
  }
  return hash >>> 0;
}

/** The partition of one encoded token (a SKU's), or of an order key (`<channel>.<orderId>`, both encoded). */
export function tokenPartition(token: string, partitionCount: number): number {
  const hash = fnvAscii(token) ?? fnv1a32(token.split(".").join(""));
  return hash % partitionCount;
}

/** The ledger partition that owns a SKU (src/stream/subjects.ts skuPartition). */
export const skuPartitionOf = (sku: string, partitionCount: number): number =>
  tokenPartition(encodeToken(sku), partitionCount);
