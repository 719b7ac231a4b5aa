package synth

import "math/bits"

// rng is a small deterministic generator (SplitMix64). The package uses its
// own generator rather than math/rand so that the output for a seed is fixed
// by this file alone and never changes with the Go release.
type rng struct{ s uint64 }

// mix64 is the SplitMix64 finaliser: a bijective 64-bit mixing function.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRNG returns a generator whose stream depends on seed and on each of
// the stream keys (for example a patient number), so that independent parts
// of the output use independent streams.
func newRNG(seed int64, keys ...uint64) rng {
	s := mix64(uint64(seed) + 0x9e3779b97f4a7c15)
	for _, k := range keys {
		s = mix64(s ^ (k + 0x9e3779b97f4a7c15))
	}
	return rng{s: s}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// intn returns a number in [0, n); n must be positive.
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

// between returns a number in [lo, hi], both included.
func (r *rng) between(lo, hi int) int {
	return lo + r.intn(hi-lo+1)
}

// float returns a number in [0, 1).
func (r *rng) float() float64 {
	return float64(r.next()>>11) / (1 << 53)
}

// chance reports true with probability p.
func (r *rng) chance(p float64) bool {
	return r.float() < p
}

// jitter returns a number in [-amp, amp], both included.
func (r *rng) jitter(amp int) int {
	return r.intn(2*amp+1) - amp
}

// weighted returns an index into weights, chosen with probability
// proportional to its weight.
func (r *rng) weighted(weights []int) int {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	x := r.intn(sum)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}
