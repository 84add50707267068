package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPendingFileRoundTrip: pending input written to a checkpoint
// directory reads back chunk for chunk, and the file is removed once read.
func TestPendingFileRoundTrip(t *testing.T) {
	tests := [][][]byte{
		{[]byte("a")},
		{[]byte("first"), {}, bytes.Repeat([]byte{0xff}, 300), []byte("last")},
	}
	for i, chunks := range tests {
		dir := t.TempDir()
		if err := writePending(filepath.Join(dir, pendingFile), chunks); err != nil {
			t.Fatal(err)
		}
		got, err := readPending(dir, pendingFile)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(chunks) {
			t.Fatalf("case %d: %d chunks, want %d", i, len(got), len(chunks))
		}
		for j := range got {
			if !bytes.Equal(got[j], chunks[j]) {
				t.Errorf("case %d chunk %d: %q, want %q", i, j, got[j], chunks[j])
			}
		}
		if _, err := os.Stat(filepath.Join(dir, pendingFile)); !os.IsNotExist(err) {
			t.Errorf("case %d: the file is still there (%v)", i, err)
		}
	}
}

// TestPendingFileRefused: a truncated file, a length past the end, and a
// name other than the one weir writes (it would be a path taken from the
// metadata) are refused, naming what is wrong.
func TestPendingFileRefused(t *testing.T) {
	tests := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"length past the end", pendingFile, []byte{5, 'a', 'b'}, "bad length"},
		{"truncated length", pendingFile, []byte{0x80}, "bad length"},
		{"foreign name", "../../etc/passwd", nil, "want"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file == pendingFile {
				if err := os.WriteFile(filepath.Join(dir, tc.file), tc.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := readPending(dir, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodePending: the decoder of a file read from a checkpoint never
// panics, and what it accepts, encoded again, decodes to the same chunks
// (not always the same bytes: a length may be a non-minimal varint).
func FuzzDecodePending(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 'x', 0, 2, 'y', 'z'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		chunks, err := decodePending(b)
		if err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), pendingFile)
		if err := writePending(path, chunks); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodePending(raw)
		if err != nil || len(again) != len(chunks) {
			t.Fatalf("re-encoded %x decodes to %d chunks, %v; want %d", raw, len(again), err, len(chunks))
		}
		for i := range again {
			if !bytes.Equal(again[i], chunks[i]) {
				t.Errorf("chunk %d: %x, want %x", i, again[i], chunks[i])
			}
		}
	})
}
