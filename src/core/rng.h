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

#endif
