/* rng.h: the project's one seeded generator, splitmix64 (Steele, Lea &
 * Flood 2014): deterministic on every machine and thread count. Used for
 * initial noise, LoRA initialisation, the tiny model's weights and test data.
 * It cannot reproduce PyTorch's RNG stream (only distributions match).
 */
#ifndef AP_RNG_H
#define AP_RNG_H

#include <stdint.h>

/* Next 64 random bits; advances *state. */
static inline uint64_t ap_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The top 53 bits of r as a double in [0, 1). */
static inline double ap_unit53(uint64_t r) { return (double)(r >> 11) * 0x1.0p-53; }

/* Counter-based keys: the state for stream `stream` of item (a, b) under
 * seed, e.g. (seed, AP_KEY_NOISE, epoch, sample index). Keys of different
 * (seed, stream, a, b) give independent splitmix64 streams, so a sample's
 * randomness never depends on which rank or micro-batch draws it. */
enum {
    AP_KEY_NOISE = 1, AP_KEY_PROMPT = 2, AP_KEY_TRUNC = 3, AP_KEY_LORA = 4,
    AP_KEY_EVAL_NOISE = 5, AP_KEY_EVAL_PROMPT = 6,
    AP_KEY_LV_NOISE = 7 /* DRaFT-LV's draws: (epoch, sample index * 64 + draw) */
};
static inline uint64_t ap_key(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b) {
    uint64_t s = seed ^ 0x5851F42D4C957F2Dull;
    uint64_t k = ap_splitmix64(&s) ^ (stream * 0xD1B54A32D192ED03ull);
    s = k;
    k = ap_splitmix64(&s) ^ (a * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
    s = k;
    k = ap_splitmix64(&s) ^ (b * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull);
    s = k;
    return ap_splitmix64(&s);
}

/* Uniform integer in [lo, hi] (inclusive) from the stream *state. */
static inline int ap_rand_int(uint64_t *state, int lo, int hi) {
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    return lo + (int)(ap_unit53(ap_splitmix64(state)) * (double)span);
}

/* n standard normal floats (Box-Muller on splitmix64) from the stream that
 * starts at state key: the same key gives the same values on every machine,
 * thread count and batch composition. Defined in core/rng.c. */
void ap_gaussian_fill(float *x, int64_t n, uint64_t key);

#endif
