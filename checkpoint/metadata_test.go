package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const sum0 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256("")

func sampleMeta() *Metadata {
	return &Metadata{
		JobID:          "job-1",
		CheckpointID:   7,
		MaxParallelism: 128,
		Created:        time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC),
		TransformNames: map[string]string{"e3": "CountWords/Count", "e7": "Stateful/ParDo(dedup)"},
		Subtasks: []SubtaskState{
			{
				SubtaskID: SubtaskID{Stage: "s2", Subtask: 1},
				KeyGroups: KeyGroupRange{64, 128},
				Files: []File{
					{Local: "MANIFEST-000001", Remote: "chk-7/s2-1/MANIFEST-000001", Size: 10, SHA256: strings.Repeat("ab", 32)},
					{Local: "000004.sst", Remote: "shared/" + strings.Repeat("cd", 32) + ".sst", Size: 1000, SHA256: strings.Repeat("cd", 32)},
					{Local: "marker.manifest.000001.MANIFEST-000001", Remote: "chk-7/s2-1/marker.manifest.000001.MANIFEST-000001", Size: 0, SHA256: sum0},
				},
			},
			{SubtaskID: SubtaskID{Stage: "s2", Subtask: 0}, KeyGroups: KeyGroupRange{0, 64}},
			{SubtaskID: SubtaskID{Stage: "source", Subtask: 0}, SourcePosition: []byte{0, 1, 2, 0xff}},
		},
	}
}

// thisVersion is the version field as this build encodes it.
var thisVersion = fmt.Sprintf(`"version":%d`, FormatVersion)

func mustEncode(t testing.TB, m *Metadata) []byte {
	t.Helper()
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestMetadataRoundTrip(t *testing.T) {
	m := sampleMeta()
	data := mustEncode(t, m)
	got, err := Decode("x/_metadata", data, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if again := mustEncode(t, got); !bytes.Equal(again, data) {
		t.Fatalf("re-encoding differs:\n%s\n%s", data, again)
	}
	if !got.Created.Equal(m.Created) || got.TransformNames["e7"] != "Stateful/ParDo(dedup)" {
		t.Fatalf("decoded %+v", got)
	}
	s := got.Subtask(SubtaskID{"source", 0})
	if s == nil || !bytes.Equal(s.SourcePosition, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("source subtask %+v", s)
	}
	// Canonical order: subtasks by (stage, subtask), files by local name.
	if got.Subtasks[0].Subtask != 0 || got.Subtasks[1].Files[0].Local != "000004.sst" {
		t.Fatalf("not canonical: %+v", got.Subtasks)
	}
	if m.Subtasks[0].Subtask != 1 || m.Subtasks[0].Files[0].Local != "MANIFEST-000001" {
		t.Fatal("Encode reordered the caller's slices")
	}
}

func TestMetadataMetrics(t *testing.T) {
	sum := func(name string, v int64) Metric {
		return Metric{URN: "beam:metric:user:sum_int64:v1", Type: "beam:metrics:sum_int64:v1",
			Labels: map[string]string{"PTRANSFORM": "e1", "NAMESPACE": "ns", "NAME": name}, Values: []int64{v}}
	}
	m := sampleMeta()
	m.Metrics = &Metrics{
		Committed: []Metric{sum("b", 5), sum("a", 3)},
		Attempted: []Metric{sum("b", 9), sum("a", 4), {URN: "beam:metric:user:distribution_int64:v1", Type: "beam:metrics:distribution_int64:v1",
			Labels: map[string]string{"PTRANSFORM": "e1", "NAMESPACE": "ns", "NAME": "d"}, Values: []int64{2, 10, 3, 7}}},
	}
	data := mustEncode(t, m)
	got, err := Decode("x/_metadata", data, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if again := mustEncode(t, got); !bytes.Equal(again, data) {
		t.Fatalf("re-encoding differs:\n%s\n%s", data, again)
	}
	c, a := got.Metrics.Committed, got.Metrics.Attempted
	// Canonical order: by URN, then labels.
	if len(c) != 2 || c[0].Labels["NAME"] != "a" || c[0].Values[0] != 3 || c[1].Values[0] != 5 {
		t.Fatalf("committed %+v", c)
	}
	if len(a) != 3 || a[0].Labels["NAME"] != "d" || fmt.Sprint(a[0].Values) != "[2 10 3 7]" || a[1].Values[0] != 4 {
		t.Fatalf("attempted %+v", a)
	}
	if m.Metrics.Committed[0].Labels["NAME"] != "b" {
		t.Fatal("Encode reordered the caller's metrics")
	}
}

// TestDecodeVersion2 decodes metadata as weir wrote it before checkpoints
// had metrics: no "metrics" field, format version 2.
func TestDecodeVersion2(t *testing.T) {
	body, err := unseal(mustEncode(t, sampleMeta()))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte(`"metrics"`)) {
		t.Fatalf("metadata without metrics encodes a metrics field: %s", body)
	}
	old := seal([]byte(strings.Replace(strings.TrimSpace(string(body)), thisVersion, `"version":2`, 1)))
	got, err := Decode("x/_metadata", old, "job-1")
	if err != nil {
		t.Fatalf("decoding version 2 metadata: %v", err)
	}
	if got.Metrics != nil || len(got.Subtasks) != 3 {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := mustEncode(t, sampleMeta())
	reseal := func(edit func(string) string) []byte {
		body, err := unseal(good)
		if err != nil {
			t.Fatal(err)
		}
		return seal([]byte(edit(strings.TrimSuffix(string(body), "\n"))))
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		job     string
		want    error
		message string
	}{
		{"empty", nil, "", ErrCorrupt, "empty"},
		{"truncated", good[:len(good)/2], "", ErrCorrupt, "truncated"},
		{"no trailer", good[:bytes.LastIndexByte(good[:len(good)-1], '\n')+1], "", ErrCorrupt, "no \"weir-checksum"},
		{"flipped byte", bytes.Replace(good, []byte(`"s2"`), []byte(`"s3"`), 1), "", ErrCorrupt, "checksum mismatch"},
		{"short checksum", append(append([]byte{}, good[:len(good)-3]...), '\n'), "", ErrCorrupt, "malformed checksum"},
		{"other job", good, "job-2", ErrForeign, `job "job-1", want "job-2"`},
		{"newer version", reseal(func(s string) string {
			return strings.Replace(s, thisVersion, fmt.Sprintf(`"version":%d`, FormatVersion+1), 1)
		}), "", ErrNewerFormat, fmt.Sprintf("format version %d; this build reads versions up to %d", FormatVersion+1, FormatVersion)},
		{"version 0", reseal(func(s string) string { return strings.Replace(s, thisVersion, `"version":0`, 1) }), "", ErrCorrupt, "invalid format version 0"},
		{"not weir", seal([]byte(`{"format":"other","version":1}`)), "", ErrCorrupt, `format "other"`},
		{"unknown field", reseal(func(s string) string { return strings.Replace(s, `"job_id"`, `"extra":1,"job_id"`, 1) }), "", ErrCorrupt, "unknown field"},
		{"escaping local name", reseal(func(s string) string { return strings.Replace(s, `"local":"000004.sst"`, `"local":"../000004.sst"`, 1) }), "", ErrCorrupt, "not a plain file name"},
		{"escaping remote name", reseal(func(s string) string { return strings.Replace(s, `"remote":"shared/`, `"remote":"../shared/`, 1) }), "", ErrCorrupt, `file 000004.sst: object name "../shared/`},
		{"remote of another checkpoint", reseal(func(s string) string { return strings.Replace(s, `"remote":"chk-7/`, `"remote":"chk-6/`, 1) }), "", ErrCorrupt, "neither under shared/ nor under chk-7/"},
		{"bad sha", reseal(func(s string) string {
			return strings.Replace(s, strings.Repeat("ab", 32), strings.Repeat("AB", 32), 1)
		}), "", ErrCorrupt, "64 lowercase hex"},
		{"key groups out of range", reseal(func(s string) string { return strings.Replace(s, `"end":128`, `"end":129`, 1) }), "", ErrCorrupt, "outside [0, 128)"},
		{"overlapping key groups", reseal(func(s string) string { return strings.Replace(s, `"start":64`, `"start":63`, 1) }), "", ErrCorrupt, "overlap"},
		{"trailing JSON", reseal(func(s string) string { return s + " {}" }), "", ErrCorrupt, "after top-level value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("bucket/job-1/chk-7/_metadata", tc.data, tc.job)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "bucket/job-1/chk-7/_metadata") || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %q does not name the object and say %q", err, tc.message)
			}
		})
	}
}

func TestDecodeEveryTruncation(t *testing.T) {
	good := mustEncode(t, sampleMeta())
	for n := range len(good) {
		if _, err := Decode("m", good[:n], ""); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d/%d bytes: %v", n, len(good), err)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for name, edit := range map[string]func(*Metadata){
		"job with slash":    func(m *Metadata) { m.JobID = "a/b" },
		"checkpoint 0":      func(m *Metadata) { m.CheckpointID = 0 },
		"max parallelism 0": func(m *Metadata) { m.MaxParallelism = 0 },
		"duplicate subtask": func(m *Metadata) { m.Subtasks = append(m.Subtasks, m.Subtasks[0]) },
		"duplicate file": func(m *Metadata) {
			m.Subtasks[0].Files = append(m.Subtasks[0].Files, m.Subtasks[0].Files[0])
		},
		"metric without URN": func(m *Metadata) {
			m.Metrics = &Metrics{Committed: []Metric{{Type: "beam:metrics:sum_int64:v1", Values: []int64{1}}}}
		},
		"metric without values": func(m *Metadata) {
			m.Metrics = &Metrics{Attempted: []Metric{{URN: "u", Type: "beam:metrics:sum_int64:v1"}}}
		},
		"duplicate metric": func(m *Metadata) {
			c := Metric{URN: "u", Type: "t", Labels: map[string]string{"NAME": "n"}, Values: []int64{1}}
			m.Metrics = &Metrics{Committed: []Metric{c, c}}
		},
	} {
		m := sampleMeta()
		edit(m)
		if _, err := Encode(m); err == nil {
			t.Errorf("%s: Encode succeeded", name)
		}
	}
}

// FuzzDecode decodes each input as it is and, so that the fuzzer gets past
// the checksum, as the JSON line of a correctly sealed file.
func FuzzDecode(f *testing.F) {
	good := mustEncode(f, sampleMeta())
	body, _ := unseal(good)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(bytes.TrimSuffix(body, []byte("\n")))
	f.Add([]byte(`{"format":"weir-checkpoint","version":1,"job_id":"j","checkpoint_id":1,"max_parallelism":1,"created":"2020-01-01T00:00:00Z","transform_names":null,"subtasks":[{"stage":"a","subtask":0,"key_groups":{"start":0,"end":1},"files":null}]}`))
	f.Add([]byte("weir-checksum sha256:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		if !bytes.ContainsRune(data, '\n') {
			check(t, seal(data))
		}
	})
}

func check(t *testing.T, data []byte) {
	m, err := Decode("fuzz", data, "")
	if err != nil {
		if m != nil {
			t.Fatal("metadata and error")
		}
		return
	}
	// Whatever decodes is valid: it encodes, and decodes again to the same
	// encoding.
	enc, err := Encode(m)
	if err != nil {
		t.Fatalf("decoded metadata does not encode: %v", err)
	}
	m2, err := Decode("fuzz", enc, m.JobID)
	if err != nil {
		t.Fatalf("re-encoded metadata does not decode: %v", err)
	}
	if enc2, _ := Encode(m2); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
	}
}
