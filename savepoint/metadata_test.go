package savepoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/weir-runner/weir/internal/sealed"
)

// validMetadata is sampleMetadata with job, ID, pipeline and files.
func validMetadata() *Metadata {
	m := sampleMetadata()
	m.Job, m.ID = "count", "7"
	sum := strings.Repeat("ab", 32)
	m.Pipeline = File{Path: PipelineBase, Size: 10, SHA256: sum}
	m.Transforms[0].Files = []File{
		{Path: "t1-kg0-4.rec", Size: 100, SHA256: sum, KeyGroups: &KeyGroupRange{0, 4}, Records: 3},
		{Path: "t1-kg4-8.rec", Size: minFileSize, SHA256: sum, KeyGroups: &KeyGroupRange{4, 8}},
	}
	m.Groups[0].Files = []File{{Path: "g1-kg0-8.rec", Size: 100, SHA256: sum, KeyGroups: &KeyGroupRange{0, 8}, Records: 1}}
	m.SideInputs[0].Files = []File{{Path: "s1-0.rec", Size: 100, SHA256: sum, Records: 1}}
	m.Sources[0].Files = []File{{Path: "r1-0.rec", Size: 100, SHA256: sum, Records: 1}, {Path: "r1-1.rec", Size: 100, SHA256: sum, Records: 1}}
	return m
}

// sealJSON builds a metadata file from a JSON document.
func sealJSON(doc string) []byte {
	return sealed.Seal([]byte(doc))
}

// reencode decodes a valid encoding's JSON, changes it and seals it again.
func reencode(t testing.TB, change func(map[string]any)) []byte {
	data, err := EncodeMetadata(validMetadata())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data[:bytes.IndexByte(data, '\n')], &doc); err != nil {
		t.Fatal(err)
	}
	change(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return sealJSON(string(out))
}

func TestMetadataRoundTrip(t *testing.T) {
	m := validMetadata()
	data, err := EncodeMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMetadata("x/_metadata", data)
	if err != nil {
		t.Fatal(err)
	}
	if want := m.canonical(); !reflect.DeepEqual(got, &want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	// The encoding is canonical: the order of lists does not matter.
	m.FiredImpulses[0], m.FiredImpulses[1] = m.FiredImpulses[1], m.FiredImpulses[0]
	fs := m.Transforms[0].Files
	fs[0], fs[1] = fs[1], fs[0]
	again, err := EncodeMetadata(m)
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("encoding of a reordered metadata differs (%v):\n%s\n%s", err, again, data)
	}
	if !strings.Contains(string(data), `"format":"weir-savepoint","version":1,`) {
		t.Errorf("encoding does not start with the format: %s", data)
	}
}

func TestDecodeMetadata(t *testing.T) {
	file := func(f map[string]any) func(map[string]any) {
		return func(doc map[string]any) {
			doc["transforms"].([]any)[0].(map[string]any)["files"].([]any)[0] = f
		}
	}
	sum := strings.Repeat("ab", 32)
	flip := func(b []byte) []byte { b[10] ^= 0x20; return b }
	good, _ := EncodeMetadata(validMetadata())
	for _, tc := range []struct {
		name string
		data []byte
		want error  // nil: ok
		text string // in the error
	}{
		{"ok", good, nil, ""},
		{"empty", nil, ErrCorrupt, "empty"},
		{"not JSON", sealJSON("hello"), ErrCorrupt, "malformed JSON"},
		{"no checksum", []byte(`{"format":"weir-savepoint","version":1}` + "\n"), ErrCorrupt, "truncated"},
		{"truncated", good[:len(good)-5], ErrCorrupt, "truncated"},
		{"flipped byte", flip(bytes.Clone(good)), ErrCorrupt, "checksum mismatch"},
		{"malformed checksum", append(bytes.Clone(good[:len(good)-3]), 'x', 'y', '\n'), ErrCorrupt, "malformed checksum"},
		{"foreign", sealJSON(`{"format":"weir-checkpoint","version":3}`), ErrForeign, `format "weir-checkpoint"`},
		{"newer", sealJSON(`{"format":"weir-savepoint","version":3,"surprise":true}`), ErrNewerFormat, "version 3"},
		{"native at version 1", reencode(t, func(d map[string]any) { d["type"] = "native" }), ErrCorrupt, `format version 1 for a savepoint of type "native"`},
		{"canonical at version 2", reencode(t, func(d map[string]any) { d["version"] = 2 }), ErrCorrupt, `format version 2 for a savepoint of type ""`},
		{"unknown type", reencode(t, func(d map[string]any) { d["type"] = "sstables" }), ErrCorrupt, `unknown savepoint type "sstables"`},
		{"version 0", sealJSON(`{"format":"weir-savepoint","version":0}`), ErrCorrupt, "invalid format version"},
		{"unknown field", reencode(t, func(d map[string]any) { d["extra"] = 1 }), ErrCorrupt, "unknown field"},
		{"bad job", reencode(t, func(d map[string]any) { d["job"] = "../x" }), ErrCorrupt, "job name"},
		{"bad id", reencode(t, func(d map[string]any) { d["id"] = "a-b" }), ErrCorrupt, "savepoint ID"},
		{"max parallelism", reencode(t, func(d map[string]any) { d["max_parallelism"] = 1 << 16 }), ErrCorrupt, "max parallelism"},
		{"parallelism", reencode(t, func(d map[string]any) { d["parallelism"] = 9 }), ErrCorrupt, "parallelism 9"},
		{"pipeline path", reencode(t, func(d map[string]any) { d["pipeline"].(map[string]any)["path"] = "p.pb" }), ErrCorrupt, "pipeline file"},
		{"absolute path", reencode(t, file(map[string]any{"path": "/etc/t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "absolute"},
		{"dotdot path", reencode(t, file(map[string]any{"path": "../other/t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "leaves the savepoint"},
		{"inner dotdot", reencode(t, file(map[string]any{"path": "a/../../t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "leaves the savepoint"},
		{"metadata path", reencode(t, file(map[string]any{"path": "_metadata", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "metadata file"},
		{"path twice", reencode(t, file(map[string]any{"path": "g1-kg0-8.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "listed twice"},
		{"pipeline as data", reencode(t, file(map[string]any{"path": "pipeline.pb", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "listed twice"},
		{"bad sha", reencode(t, file(map[string]any{"path": "t.rec", "size": 100, "sha256": "AB", "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "sha256"},
		{"negative size", reencode(t, file(map[string]any{"path": "t.rec", "size": -1, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "negative"},
		{"small size", reencode(t, file(map[string]any{"path": "t.rec", "size": 3, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 4}})), ErrCorrupt, "less than an empty"},
		{"no key groups", reencode(t, file(map[string]any{"path": "t.rec", "size": 100, "sha256": sum})), ErrCorrupt, "no key groups"},
		{"empty range", reencode(t, file(map[string]any{"path": "t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 2, "end": 2}})), ErrCorrupt, "empty or outside"},
		{"range outside", reencode(t, file(map[string]any{"path": "t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 0, "end": 9}})), ErrCorrupt, "empty or outside"},
		{"ranges overlap", reencode(t, file(map[string]any{"path": "t.rec", "size": 100, "sha256": sum, "key_groups": map[string]any{"start": 3, "end": 5}})), ErrCorrupt, "overlap"},
		{"unkeyed with range", reencode(t, func(d map[string]any) {
			d["sources"].([]any)[0].(map[string]any)["files"].([]any)[0].(map[string]any)["key_groups"] = map[string]any{"start": 0, "end": 1}
		}), ErrCorrupt, "not keyed"},
		{"state kind", reencode(t, func(d map[string]any) {
			d["transforms"].([]any)[0].(map[string]any)["states"].([]any)[0].(map[string]any)["kind"] = "queue"
		}), ErrCorrupt, `unknown kind "queue"`},
		{"map coder", reencode(t, func(d map[string]any) {
			delete(d["transforms"].([]any)[0].(map[string]any)["states"].([]any)[3].(map[string]any), "user_key_coder")
		}), ErrCorrupt, "no user key coder"},
		{"timer domain", reencode(t, func(d map[string]any) {
			d["transforms"].([]any)[0].(map[string]any)["timers"].([]any)[0].(map[string]any)["domain"] = "wall"
		}), ErrCorrupt, "unknown time domain"},
		{"state twice", reencode(t, func(d map[string]any) {
			ss := d["transforms"].([]any)[0].(map[string]any)["states"].([]any)
			ss[1] = ss[0]
		}), ErrCorrupt, "listed twice"},
		{"transform twice", reencode(t, func(d map[string]any) {
			d["transforms"] = append(d["transforms"].([]any), map[string]any{"unique_name": "count/Stateful"})
		}), ErrCorrupt, "listed twice"},
		{"empty name", reencode(t, func(d map[string]any) { d["groups"].([]any)[0].(map[string]any)["unique_name"] = "" }), ErrCorrupt, "empty name"},
		{"group coder", reencode(t, func(d map[string]any) { d["groups"].([]any)[0].(map[string]any)["key_coder"] = "" }), ErrCorrupt, "no key coder"},
		{"side kind", reencode(t, func(d map[string]any) {
			d["side_inputs"].([]any)[0].(map[string]any)["inputs"].([]any)[0].(map[string]any)["kind"] = "map"
		}), ErrCorrupt, `unknown kind "map"`},
		{"impulse twice", reencode(t, func(d map[string]any) { d["fired_impulses"] = []any{"a", "a"} }), ErrCorrupt, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMetadata("file:///sp/savepoint-count-7/_metadata", tc.data)
			if tc.want == nil {
				if err != nil || m == nil {
					t.Fatalf("DecodeMetadata = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "file:///sp/savepoint-count-7/_metadata") {
				t.Errorf("DecodeMetadata = %v; want %v, %q and the object's name", err, tc.want, tc.text)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	m := validMetadata()
	m.Sources[0].Files[0].Path = "../x.rec"
	if _, err := EncodeMetadata(m); err == nil || !strings.Contains(err.Error(), "leaves the savepoint") {
		t.Errorf("EncodeMetadata = %v", err)
	}
}

// FuzzDecodeMetadata decodes data as a metadata file or, with seal, as the
// JSON line of one (the fuzzer cannot forge checksums itself).
func FuzzDecodeMetadata(f *testing.F) {
	good, err := EncodeMetadata(validMetadata())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false)
	f.Add(good[:bytes.IndexByte(good, '\n')], true)
	f.Add([]byte(`{"format":"weir-savepoint","version":1}`), true)
	f.Add([]byte(`{"format":"weir-savepoint","version":1,"job":"j","id":"1","max_parallelism":4,"parallelism":1,"pipeline":{"path":"pipeline.pb","size":0,"sha256":"`+strings.Repeat("0", 64)+`"}}`), true)
	f.Add([]byte("weir-checksum sha256:\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		if seal {
			data = sealJSON(string(data))
		}
		m, err := DecodeMetadata("fuzz", data)
		if err != nil {
			if m != nil {
				t.Fatal("metadata and an error")
			}
			return
		}
		// What decodes encodes again, and back to the same.
		again, err := EncodeMetadata(m)
		if err != nil {
			t.Fatalf("decoded metadata does not encode: %v", err)
		}
		m2, err := DecodeMetadata("fuzz", again)
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		c := m.canonical()
		if !reflect.DeepEqual(&c, m2) {
			t.Fatalf("round trip changed the metadata:\n%+v\n%+v", c, m2)
		}
	})
}
