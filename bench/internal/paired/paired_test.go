package paired

import "testing"

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{0.9, 0.6, 0.8}, 0.8},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if got, want := Format([]float64{0.9, 0.6, 0.8}), "0.80x (median of 0.90, 0.60, 0.80)"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
}
