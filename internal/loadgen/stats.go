package loadgen

import (
	"slices"
	"time"
)

// Latencies is a set of round-trip samples. The zero value is empty and
// ready to use; it is not safe for concurrent use.
type Latencies struct {
	d      []time.Duration
	sorted bool
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) {
	l.d = append(l.d, d)
	l.sorted = false
}

// Merge adds every sample of o.
func (l *Latencies) Merge(o *Latencies) {
	l.d = append(l.d, o.d...)
	l.sorted = false
}

// Len returns the number of samples.
func (l *Latencies) Len() int { return len(l.d) }

// Percentile returns the sample at quantile q (0..1) by the nearest-rank
// method: the smallest sample with at least q of all samples at or below
// it. It returns 0 for an empty set.
func (l *Latencies) Percentile(q float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	if !l.sorted {
		slices.Sort(l.d)
		l.sorted = true
	}
	return l.d[rankIndex(len(l.d), q)]
}

// rankIndex is the 0-based index of the nearest-rank q-quantile of n
// sorted samples.
func rankIndex(n int, q float64) int {
	q = min(max(q, 0), 1)
	// Nearest rank: ceil(q·n), 1-based; at least 1.
	r := int(q * float64(n))
	if float64(r) < q*float64(n) {
		r++
	}
	return min(max(r, 1), n) - 1
}
