package savepoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// encodeFile frames recs as a data file, without the checks of a
// RecordWriter.
func encodeFile(t testing.TB, recs []Record) []byte {
	var buf bytes.Buffer
	f := newFramer(&buf)
	if err := f.header(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := f.record(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.footer(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readFile reads a data file of section sec from data; want may be nil.
func readFile(data []byte, sec Section, want *File) ([]Record, error) {
	r := newRecordReader(bytes.NewReader(data), nil, "test.rec", sec, want, nil)
	var recs []Record
	for r.Next() {
		recs = append(recs, r.Record())
	}
	return recs, r.Err()
}

func TestFraming(t *testing.T) {
	s := newSample()
	for _, tc := range []struct {
		sec  Section
		recs []Record
	}{
		{SectionTransforms, s.state[KeyGroupRange{0, 4}]},
		{SectionGroups, s.groups[KeyGroupRange{2, 8}]},
		{SectionSideInputs, s.side},
		{SectionSources, s.residual[1]},
		{SectionSources, nil},
	} {
		data := encodeFile(t, tc.recs)
		if len(tc.recs) == 0 && len(data) != minFileSize {
			t.Errorf("an empty file has %d bytes, minFileSize is %d", len(data), minFileSize)
		}
		sum := sha256.Sum256(data)
		want := &File{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Records: int64(len(tc.recs))}
		got, err := readFile(data, tc.sec, want)
		if err != nil || len(got) != len(tc.recs) || len(got) > 0 && !reflect.DeepEqual(got, tc.recs) {
			t.Errorf("%s: read %v, %v; wrote %v", tc.sec, got, err, tc.recs)
		}
		// Every truncation is detected.
		for n := range len(data) {
			if _, err := readFile(data[:n], tc.sec, nil); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: truncated to %d of %d bytes: %v, want ErrCorrupt", tc.sec, n, len(data), err)
			}
		}
		// And every flipped bit.
		for i := range len(data) * 8 {
			d := bytes.Clone(data)
			d[i/8] ^= 1 << (i % 8)
			if _, err := readFile(d, tc.sec, nil); err == nil {
				t.Fatalf("%s: bit %d flipped: no error", tc.sec, i)
			}
		}
	}
	// Records in the wrong section or key-group order are refused.
	if _, err := readFile(encodeFile(t, s.side), SectionSources, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("side inputs read as a source: %v", err)
	}
	disorder := []Record{&TriggerRecord{KeyGroup: 5}, &TriggerRecord{KeyGroup: 4}}
	if _, err := readFile(encodeFile(t, disorder), SectionGroups, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("key groups out of order: %v", err)
	}
	// A newer version is refused as such.
	data := encodeFile(t, nil)
	data[len(fileMagic)] = FormatVersion + 1
	if _, err := readFile(data, SectionGroups, nil); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("newer data file: %v, want ErrNewerFormat", err)
	}
}

func FuzzRecordReader(f *testing.F) {
	s := newSample()
	for sec, recs := range map[Section][]Record{
		SectionTransforms: s.state[KeyGroupRange{0, 4}],
		SectionGroups:     s.groups[KeyGroupRange{2, 8}],
		SectionSideInputs: s.side,
		SectionSources:    s.residual[0],
	} {
		f.Add(encodeFile(f, recs), uint8(sec), int64(len(recs)), true)
	}
	f.Add(encodeFile(f, nil), uint8(SectionSources), int64(0), false)
	f.Add([]byte(fileMagic+"\x01\x01\xff\xff\xff\xff\x07"), uint8(SectionTransforms), int64(1), false)
	f.Fuzz(func(t *testing.T, data []byte, sec uint8, records int64, useWant bool) {
		var want *File
		if useWant {
			sum := sha256.Sum256(data)
			want = &File{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Records: records, KeyGroups: &KeyGroupRange{0, 6}}
		}
		recs, err := readFile(data, Section(sec), want)
		if err != nil {
			return
		}
		// What reads as a good file is exactly the encoding of its records.
		if again := encodeFile(t, recs); !bytes.Equal(again, data) {
			t.Fatalf("%d records re-encode differently:\n%x\n%x", len(recs), again, data)
		}
		// Borrowed (records and bytes read over by the next), each record
		// is the same while it is current.
		r := newRecordReader(bytes.NewReader(data), nil, "test.rec", Section(sec), want, nil)
		r.borrow = true
		i := 0
		for ; r.Next(); i++ {
			if i >= len(recs) || !reflect.DeepEqual(r.Record(), recs[i]) {
				t.Fatalf("borrowed record %d differs: %#v", i, r.Record())
			}
		}
		if r.Err() != nil || i != len(recs) {
			t.Fatalf("borrowed: %d records, err %v; want %d", i, r.Err(), len(recs))
		}
	})
}

// FuzzDecodeRecord decodes record bodies directly (FuzzRecordReader rarely
// gets past the CRCs).
func FuzzDecodeRecord(f *testing.F) {
	s := newSample()
	for _, recs := range [][]Record{s.state[KeyGroupRange{0, 4}], s.groups[KeyGroupRange{2, 8}], s.side, s.residual[0]} {
		for _, r := range recs {
			f.Add(uint8(r.kind()), r.appendBody(nil))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		r, err := decodeRecord(recordKind(kind), body)
		if err != nil {
			if r != nil {
				t.Fatal("a record and an error")
			}
			return
		}
		again, err := decodeRecord(r.kind(), r.appendBody(nil))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded record reads back as %+v, %v; want %+v", again, err, r)
		}
	})
}
