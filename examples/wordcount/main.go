// Command wordcount counts the words of a text with Beam's textio on weir.
// By default it runs on embedded weir (--runner=weir) and reads the sample
// text shipped beside it: the first 47 lines of King Lear (public domain)
// repeated 40 times, 1,880 lines, so its counts are 40 times those of the
// excerpt. Pass --input for a text of your own.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"regexp"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners" // --runner
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	_ "github.com/weir-runner/weir/runner"
)

var (
	input  = flag.String("input", "examples/wordcount/testdata/kinglear.txt", "text file(s) to read (glob)")
	output = flag.String("output", "", "file to write counts to; empty prints the top words")
	top    = flag.Int("top", 10, "how many of the most frequent words to print when --output is empty")
)

var wordRE = regexp.MustCompile(`[a-zA-Z]+('[a-z])?`)

func extractFn(line string, emit func(string)) {
	for _, w := range wordRE.FindAllString(line, -1) {
		emit(strings.ToLower(w))
	}
}

func formatFn(w string, c int) string { return fmt.Sprintf("%s: %v", w, c) }

func init() {
	register.Function2x0(extractFn)
	register.Function2x1(formatFn)
	register.Emitter1[string]()
}

// CountWords is the pipeline: lines → words → counts per word.
func CountWords(s beam.Scope, lines beam.PCollection) beam.PCollection {
	s = s.Scope("CountWords")
	words := beam.ParDo(s, extractFn, lines)
	return stats.Count(s, words)
}

func main() {
	flag.Parse()
	if *runners.Runner == "" || *runners.Runner == "direct" && !flagSet("runner") {
		*runners.Runner = "weir"
	}
	beam.Init()
	p, s := beam.NewPipelineWithRoot()
	lines := textio.Read(s, *input)
	counts := CountWords(s, lines)
	if *output != "" {
		textio.Write(s, *output, beam.ParDo(s, formatFn, counts))
	} else {
		printTop(s, counts, *top)
	}
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatalf("wordcount failed: %v", err)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
