package engine

import (
	"fmt"
	"reflect"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/wire"
)

// channel is a split response of the source "src": residual roots rs,
// primary roots ps, and a channel split at lastPrimary/firstResidual.
func channel(lastPrimary, firstResidual int64, ps, rs []string) *fnpb.ProcessBundleSplitResponse {
	resp := &fnpb.ProcessBundleSplitResponse{
		ChannelSplits: []*fnpb.ProcessBundleSplitResponse_ChannelSplit{{
			TransformId: "src", LastPrimaryElement: lastPrimary, FirstResidualElement: firstResidual,
		}},
	}
	for _, p := range ps {
		resp.PrimaryRoots = append(resp.PrimaryRoots, &fnpb.BundleApplication{Element: []byte(p)})
	}
	for _, r := range rs {
		resp.ResidualRoots = append(resp.ResidualRoots, &fnpb.DelayedBundleApplication{
			Application: &fnpb.BundleApplication{Element: []byte(r)},
		})
	}
	return resp
}

// TestSplitterTakesEachElementOnce: the SDK answers a later split within
// what an earlier one left primary, so the residual of each split is the
// elements between its first residual and the previous split's; the
// primary that a retry runs is what stayed, with split elements replaced
// by their primary roots.
func TestSplitterTakesEachElementOnce(t *testing.T) {
	tests := []struct {
		name    string
		splits  []*fnpb.ProcessBundleSplitResponse
		work    [][]string // per split
		primary string     // "" with split false: nothing was split
		split   bool
	}{
		{
			name:    "one channel split",
			splits:  []*fnpb.ProcessBundleSplitResponse{channel(3, 4, nil, nil)},
			work:    [][]string{{"e4", "e5", "e6", "e7"}},
			primary: "e0e1e2e3", split: true,
		},
		{
			name: "share split then checkpoint split of the running element",
			splits: []*fnpb.ProcessBundleSplitResponse{
				channel(3, 4, nil, nil),
				channel(0, 2, []string{"p1"}, []string{"r1"}), // the SDK's sub-element split of element 1
			},
			work:    [][]string{{"e4", "e5", "e6", "e7"}, {"r1", "e2", "e3"}},
			primary: "e0p1", split: true,
		},
		{
			name: "two sub-element splits of the same element",
			splits: []*fnpb.ProcessBundleSplitResponse{
				channel(4, 6, []string{"p5"}, []string{"r5"}),
				channel(4, 6, []string{"q5"}, []string{"s5"}),
			},
			work:    [][]string{{"r5", "e6", "e7"}, {"s5"}},
			primary: "e0e1e2e3e4q5", split: true,
		},
		{
			name: "a later split past the earlier one takes nothing again",
			splits: []*fnpb.ProcessBundleSplitResponse{
				channel(3, 4, nil, nil),
				channel(5, 6, nil, nil),
			},
			work:    [][]string{{"e4", "e5", "e6", "e7"}, nil},
			primary: "e0e1e2e3", split: true,
		},
		{
			name: "channel split of another transform is not this input's",
			splits: []*fnpb.ProcessBundleSplitResponse{{
				ChannelSplits: []*fnpb.ProcessBundleSplitResponse_ChannelSplit{{TransformId: "other", FirstResidualElement: 1}},
			}},
			work: [][]string{nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &splitter{}
			for i := range 8 {
				s.elems = append(s.elems, []byte(fmt.Sprintf("e%d", i)))
			}
			s.end = int64(len(s.elems))
			for i, resp := range tc.splits {
				work := s.takeLocked(resp, "src")
				var got []string
				for _, w := range work {
					got = append(got, string(w.data))
				}
				if !reflect.DeepEqual(got, tc.work[i]) {
					t.Errorf("split %d took %q, want %q", i, got, tc.work[i])
				}
				for j, w := range work {
					if w.elem >= 0 && string(w.data) != fmt.Sprintf("e%d", w.elem) {
						t.Errorf("split %d: work %q said to be element %d", i, w.data, w.elem)
					}
					if w.hold != wire.MinTimestamp {
						t.Errorf("split %d: hold %d = %d, want unknown", i, j, w.hold)
					}
				}
			}
			p, split := s.primary()
			got := ""
			for _, c := range p {
				got += string(c)
			}
			if split != tc.split || got != tc.primary {
				t.Errorf("primary = %q, %v; want %q, %v", got, split, tc.primary, tc.split)
			}
		})
	}
}

// TestSplitterSettle: a checkpoint split's whole elements that the bundle
// processed anyway (the SDK's channel split at the element it is running)
// are not run again; residual roots and elements past the read index are.
func TestSplitterSettle(t *testing.T) {
	tests := []struct {
		name string
		read int64
		want []string
	}{
		{"the split element was not run", 2, []string{"r", "e2", "e3"}},
		{"the SDK ran the element it called residual", 3, []string{"r", "e3"}},
		{"all run", 4, []string{"r"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &splitter{}
			s.local = []splitWork{{[]byte("r"), -1, 0}, {[]byte("e2"), 2, wire.MinTimestamp}, {[]byte("e3"), 3, wire.MinTimestamp}}
			s.settle(tc.read)
			var got []string
			for _, r := range s.residuals() {
				got = append(got, string(r))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("after settle(%d): %q, want %q", tc.read, got, tc.want)
			}
		})
	}
}
