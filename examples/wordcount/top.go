package main

import (
	"fmt"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

type wordCount struct {
	Word  string
	Count int
}

func toWordCount(w string, c int) wordCount { return wordCount{w, c} }

// printTopFn prints the n most frequent words, ties broken by word.
type printTopFn struct{ N int }

func (f *printTopFn) ProcessElement(_ []byte, all func(*wordCount) bool) {
	var wcs []wordCount
	var wc wordCount
	total := 0
	for all(&wc) {
		wcs = append(wcs, wc)
		total += wc.Count
	}
	sort.Slice(wcs, func(i, j int) bool {
		if wcs[i].Count != wcs[j].Count {
			return wcs[i].Count > wcs[j].Count
		}
		return wcs[i].Word < wcs[j].Word
	})
	fmt.Printf("%d words, %d distinct. Most frequent:\n", total, len(wcs))
	for i := 0; i < len(wcs) && i < f.N; i++ {
		fmt.Printf("%6d  %s\n", wcs[i].Count, wcs[i].Word)
	}
}

func init() {
	register.Function2x1(toWordCount)
	register.DoFn2x0[[]byte, func(*wordCount) bool](&printTopFn{})
	register.Iter1[wordCount]()
}

func printTop(s beam.Scope, counts beam.PCollection, n int) {
	s = s.Scope("PrintTop")
	wcs := beam.ParDo(s, toWordCount, counts)
	beam.ParDo0(s, &printTopFn{N: n}, beam.Impulse(s), beam.SideInput{Input: wcs})
}
