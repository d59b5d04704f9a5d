/**
 * zlib's adler32 as koji uses it for upload verification (koji-protocol.md §6.1): seeded with 1,
 * printed as 8 lowercase hex digits (`"%08x"`). Node has no adler32, so it is written here.
 */

const MOD = 65521
/** Largest n such that 255·n·(n+1)/2 + (n+1)·(MOD−1) fits in 2^32−1 (zlib's NMAX). */
const NMAX = 5552

/** Continues an adler32 checksum over `bytes`; start with `1` for a fresh checksum. */
export const adler32Update = (adler: number, bytes: Uint8Array): number => {
  let a = adler & 0xffff
  let b = (adler >>> 16) & 0xffff
  let i = 0
  const len = bytes.length
  while (i < len) {
    const end = Math.min(i + NMAX, len)
    for (; i < end; i++) {
      a += bytes[i]!
      b += a
    }
    a %= MOD
    b %= MOD
  }
  return ((b << 16) | a) >>> 0
}

/** The adler32 of two pieces one after the other, from theirs and the second's length (zlib's `adler32_combine`). */
export const adler32Combine = (adler1: number, adler2: number, length2: number): number => {
  const rem = length2 % MOD
  let sum1 = adler1 & 0xffff
  let sum2 = (rem * sum1) % MOD
  sum1 += (adler2 & 0xffff) + MOD - 1
  sum2 += ((adler1 >>> 16) & 0xffff) + ((adler2 >>> 16) & 0xffff) + MOD - rem
  if (sum1 >= MOD) sum1 -= MOD
  if (sum1 >= MOD) sum1 -= MOD
  if (sum2 >= 2 * MOD) sum2 -= 2 * MOD
  if (sum2 >= MOD) sum2 -= MOD
  return sum2 * 65536 + sum1
}

/** The adler32 of `bytes` (seed 1) as a number. */
export const adler32 = (bytes: Uint8Array): number => adler32Update(1, bytes)

/** The adler32 of a number as koji prints it: 8 lowercase hex digits. */
export const adler32Hex = (value: number): string => value.toString(16).padStart(8, "0")

/** The adler32 of `bytes` (seed 1) as 8 lowercase hex digits; `"00000001"` for no bytes. */
export const adler32Hexdigest = (bytes: Uint8Array): string => adler32Hex(adler32(bytes))
