package synth

// Instrument names as they appear in the local record format.
const (
	instrPHQ9  = "PHQ-9"
	instrPHQ2  = "PHQ-2"
	instrGAD7  = "GAD-7"
	instrMADRS = "MADRS"
	instrQIDS  = "QIDS-SR16"
)

// Relative weights of the items of the summed instruments: how readily a
// point of the total lands on each item. Core mood items carry more weight,
// suicidality items less.
var (
	// PHQ-9: anhedonia, depressed mood, sleep, energy, appetite,
	// self-worth, concentration, psychomotor, self-harm thoughts.
	phq9Weights = []int{13, 14, 11, 12, 8, 10, 9, 6, 3}
	// GAD-7: nervous, can't stop worrying, worrying too much, trouble
	// relaxing, restless, irritable, afraid.
	gad7Weights = []int{12, 11, 12, 10, 8, 9, 8}
	// MADRS: apparent sadness, reported sadness, inner tension, reduced
	// sleep, reduced appetite, concentration, lassitude, inability to feel,
	// pessimistic thoughts, suicidal thoughts.
	madrsWeights = []int{12, 12, 10, 11, 8, 9, 9, 10, 11, 5}
)

// distribute returns len(weights) items, each in [0, max], summing to
// total (clamped to [0, len(weights)*max]).
func (r *rng) distribute(total, max int, weights []int) []int {
	items := make([]int, len(weights))
	total = clamp(total, 0, max*len(weights))
	for ; total > 0; total-- {
		sum := 0
		for j, w := range weights {
			if items[j] < max {
				sum += w
			}
		}
		x := r.intn(sum)
		for j, w := range weights {
			if items[j] >= max {
				continue
			}
			if x < w {
				items[j]++
				break
			}
			x -= w
		}
	}
	return items
}

// qidsTotal scores the QIDS-SR16 from its 16 items (each 0-3): the highest
// of the four sleep items (1-4), mood (5), the highest of the four
// appetite/weight items (6-9), items 10-14 each, and the higher of the two
// psychomotor items (15-16). The range is 0-27.
func qidsTotal(items []int) int {
	return maxOf(items[0:4]) + items[4] + maxOf(items[5:9]) +
		items[9] + items[10] + items[11] + items[12] + items[13] + maxOf(items[14:16])
}

// qidsItems draws the 16 QIDS-SR16 items for a severity in [0, 1].
func (r *rng) qidsItems(severity float64) []int {
	item := func(bias float64) int {
		v := 3*severity + bias + (r.float()-0.5)*1.5
		return clamp(int(v+0.5), 0, 3)
	}
	items := make([]int, 16)
	// Sleep: falling asleep, sleep during the night, waking too early,
	// sleeping too much.
	items[0], items[1], items[2], items[3] = item(0), item(-0.1), item(-0.4), item(-1.3)
	items[4] = item(0.2) // feeling sad
	// Appetite and weight: decreased appetite, increased appetite, decreased
	// weight, increased weight; one direction dominates.
	if r.chance(0.65) {
		items[5], items[7] = item(-0.2), item(-0.6)
	} else {
		items[6], items[8] = item(-0.2), item(-0.6)
	}
	items[9] = item(0)     // concentration
	items[10] = item(-0.2) // view of myself
	items[11] = item(-1.4) // thoughts of death or suicide
	items[12] = item(0.1)  // general interest
	items[13] = item(0.1)  // energy level
	items[14] = item(-0.4) // feeling slowed down
	items[15] = item(-0.7) // feeling restless
	return items
}

func maxOf(xs []int) int {
	m := xs[0]
	for _, x := range xs[1:] {
		if x > m {
			m = x
		}
	}
	return m
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

func clamp(x, lo, hi int) int {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
