// Package paired owns how the benchmarks judge paired rounds on a shared,
// noisy machine: the median of the per-round ratios, and how it prints.
package paired

import (
	"fmt"
	"sort"
	"strings"
)

// Median is the median of xs (the mean of the middle two for an even
// count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Format prints the median of the ratios xs, with every value when there
// are several: "0.93x (median of 0.91, 0.93, 0.97)".
func Format(xs []float64) string {
	if len(xs) == 1 {
		return fmt.Sprintf("%.2fx", xs[0])
	}
	var each []string
	for _, x := range xs {
		each = append(each, fmt.Sprintf("%.2f", x))
	}
	return fmt.Sprintf("%.2fx (median of %s)", Median(xs), strings.Join(each, ", "))
}
