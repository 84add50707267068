package savepoint

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// fileMagic (8 bytes) starts every data file, followed by the uvarint
// format version.
const fileMagic = "WEIRSAVE"

// minFileSize is the size of a data file without records: magic, version,
// and a footer frame (kind, length, count 0, SHA-256, CRC).
const minFileSize = 8 + 1 + 1 + 1 + 1 + sha256.Size + 4

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// framer writes the framing of a data file to w (see the package doc) and
// keeps its size, SHA-256 and record count.
type framer struct {
	w     io.Writer
	h     hash.Hash
	size  int64
	count int64
	body  []byte // scratch
	buf   []byte // scratch
}

func newFramer(w io.Writer) *framer { return &framer{w: w, h: sha256.New()} }

func (f *framer) write(b []byte) error {
	f.h.Write(b)
	f.size += int64(len(b))
	_, err := f.w.Write(b)
	return err
}

func (f *framer) header() error {
	return f.write(binary.AppendUvarint([]byte(fileMagic), FormatVersion))
}

// frame writes one frame: kind, uvarint body length, body, CRC-32C of
// those. fill appends the body to its argument.
func (f *framer) frame(k recordKind, fill func([]byte) []byte) error {
	f.body = fill(f.body[:0])
	if len(f.body) > maxRecordSize {
		return fmt.Errorf("record of %d bytes, more than %d", len(f.body), maxRecordSize)
	}
	b := binary.AppendUvarint(append(f.buf[:0], byte(k)), uint64(len(f.body)))
	b = append(b, f.body...)
	f.buf = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	return f.write(f.buf)
}

func (f *framer) record(r Record) error {
	if err := f.frame(r.kind(), r.appendBody); err != nil {
		return err
	}
	f.count++
	return nil
}

// footer writes the end frame: the record count and the SHA-256 of every
// byte before the frame.
func (f *framer) footer() error {
	prefix := f.h.Sum(nil)
	return f.frame(kindEnd, func(b []byte) []byte {
		return append(binary.AppendUvarint(b, uint64(f.count)), prefix...)
	})
}

// RecordReader reads the records of one data file, checking its framing as
// it goes and, at the end, its footer and the size, SHA-256 and record count
// the metadata records. A record is returned only once its frame's CRC is
// checked, but the file as a whole is only known to be intact when Next
// has returned false with Err nil: act on records only then (e.g. write
// them into a batch that is committed after).
type RecordReader struct {
	name   string // for errors: store URL and object name
	src    *bufio.Reader
	closer io.Closer
	sec    Section
	want   *File
	check  func(Record) error

	h       hash.Hash
	crc     uint32
	size    int64
	count   int64
	lastKG  int
	started bool
	done    bool
	rec     Record
	err     error
	one     [1]byte
	sum     [4]byte
	// borrow: a record's bytes alias buf, and a record of a kind in
	// slots is that slot, both read over by the next record
	// (Savepoint.EachBorrowed).
	borrow bool
	buf    []byte
	slots  slots
	// strs interns the state IDs and timer families read: a file has few.
	strs interner
}

// newRecordReader reads a data file of section sec from src. If want is
// not nil, the file must match it; check, if not nil, vets every record.
func newRecordReader(src io.Reader, closer io.Closer, name string, sec Section, want *File, check func(Record) error) *RecordReader {
	return &RecordReader{name: name, src: bufio.NewReaderSize(src, 256<<10), closer: closer,
		sec: sec, want: want, check: check, h: sha256.New()}
}

// Next reads the next record; it returns false at the end of the file or
// on an error (see Err).
func (r *RecordReader) Next() bool {
	if r.done || r.err != nil {
		return false
	}
	r.rec = nil
	if err := r.next(); err != nil {
		r.err = r.wrap(err)
		return false
	}
	return r.rec != nil
}

// Record returns the record read by the last successful Next. Its byte
// slices are its own.
func (r *RecordReader) Record() Record { return r.rec }

// Err returns the error that ended the reading, nil at a good end.
func (r *RecordReader) Err() error { return r.err }

// Count returns how many records have been read.
func (r *RecordReader) Count() int64 { return r.count }

// Close releases the file.
func (r *RecordReader) Close() error {
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	if err := c.Close(); err != nil {
		return fmt.Errorf("savepoint: closing data file %s: %w", r.name, err)
	}
	return nil
}

// corruptError is an error in the data itself (wrapped with ErrCorrupt).
type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }

func corruptf(format string, args ...any) error {
	return &corruptError{fmt.Sprintf(format, args...)}
}

func (r *RecordReader) wrap(err error) error {
	var ce *corruptError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("savepoint: data file %s: %w: %s", r.name, ErrCorrupt, ce.msg)
	case errors.Is(err, ErrNewerFormat):
		return fmt.Errorf("savepoint: data file %s: %w", r.name, err)
	}
	return fmt.Errorf("savepoint: reading data file %s: %w", r.name, err)
}

// readErr turns an early end of the data into a corruptError.
func (r *RecordReader) readErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("truncated at byte %d, in %s", r.size, what)
	}
	return err
}

// byteReader is the io.ByteReader of a RecordReader, for binary.ReadUvarint.
type byteReader struct{ r *RecordReader }

func (b byteReader) ReadByte() (byte, error) { return b.r.readByte() }

// readByte consumes one byte, adding it to the hash and the frame's CRC.
func (r *RecordReader) readByte() (byte, error) {
	c, err := r.src.ReadByte()
	if err != nil {
		return 0, err
	}
	r.one[0] = c
	r.consumed(r.one[:])
	return c, nil
}

func (r *RecordReader) consumed(b []byte) {
	r.h.Write(b)
	r.crc = crc32.Update(r.crc, crcTable, b)
	r.size += int64(len(b))
}

// readFull consumes n bytes into dst's array if they fit there, else
// into new memory allocated as they arrive, so that a corrupt length does
// not size a buffer.
func (r *RecordReader) readFull(dst []byte, n int, what string) ([]byte, error) {
	if n <= cap(dst) {
		b := dst[:n]
		if _, err := io.ReadFull(r.src, b); err != nil {
			return nil, r.readErr(err, what)
		}
		r.consumed(b)
		return b, nil
	}
	const chunk = 1 << 20
	b := make([]byte, 0, min(n, chunk))
	for len(b) < n {
		m := min(n-len(b), chunk)
		b = append(b, make([]byte, m)...)
		if _, err := io.ReadFull(r.src, b[len(b)-m:]); err != nil {
			return nil, r.readErr(err, what)
		}
		r.consumed(b[len(b)-m:])
	}
	return b, nil
}

func (r *RecordReader) header() error {
	magic, err := r.readFull(nil, len(fileMagic), "the header")
	if err != nil {
		return err
	}
	if string(magic) != fileMagic {
		return corruptf("not a savepoint data file: starts with %q, want %q", magic, fileMagic)
	}
	v, err := binary.ReadUvarint(byteReader{r})
	if err != nil {
		return r.readErr(err, "the header")
	}
	if v > FormatVersion {
		return fmt.Errorf("%w: format version %d; this build reads versions up to %d: use a newer weir", ErrNewerFormat, v, FormatVersion)
	}
	if v < 1 {
		return corruptf("invalid format version %d", v)
	}
	return nil
}

// frame reads one frame and returns its kind and checked body.
func (r *RecordReader) frame() (recordKind, []byte, error) {
	start := r.size
	r.crc = 0
	// The kind and the length, parsed where the buffer holds them and
	// hashed in one step.
	hdr, err := r.src.Peek(1 + binary.MaxVarintLen64)
	if len(hdr) == 0 {
		return 0, nil, r.readErr(err, "a record's kind")
	}
	k := hdr[0]
	if recordKind(k) >= kindLimit {
		return 0, nil, corruptf("unknown record kind %d at byte %d", k, start)
	}
	n, m := binary.Uvarint(hdr[1:])
	switch {
	case m == 0: // the data ends within it (Peek returned fewer bytes, and why)
		return 0, nil, r.readErr(err, "a record's length")
	case m < 0:
		return 0, nil, corruptf("record length at byte %d overflows 64 bits", start)
	}
	r.consumed(hdr[:1+m])
	if _, err := r.src.Discard(1 + m); err != nil {
		return 0, nil, err
	}
	if n > maxRecordSize {
		return 0, nil, corruptf("record length %d at byte %d is more than %d", n, start, maxRecordSize)
	}
	if r.want != nil && r.size+int64(n)+4 > r.want.Size {
		return 0, nil, corruptf("record at byte %d of %d bytes goes past the recorded size %d", start, n, r.want.Size)
	}
	var reuse []byte // nil: the record owns its bytes
	if r.borrow {
		reuse = r.buf
	}
	b, err := r.readFull(reuse, int(n), "a record")
	if err != nil {
		return 0, nil, err
	}
	if r.borrow && cap(b) > cap(r.buf) {
		r.buf = b // of a length the frame has shown
	}
	crc := r.crc
	sum, err := r.readFull(r.sum[:0], 4, "a record's CRC")
	if err != nil {
		return 0, nil, err
	}
	if got := binary.BigEndian.Uint32(sum); got != crc {
		return 0, nil, corruptf("CRC mismatch in the record at byte %d: content %08x, recorded %08x", start, crc, got)
	}
	return recordKind(k), b, nil
}

func (r *RecordReader) next() error {
	if !r.started {
		r.started = true
		r.lastKG = -1
		if err := r.header(); err != nil {
			return err
		}
	}
	next, err := r.src.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return corruptf("truncated after %d records at byte %d: no footer", r.count, r.size)
		}
		return err
	}
	var prefix []byte
	if recordKind(next[0]) == kindEnd {
		prefix = r.h.Sum(nil) // the SHA-256 of what precedes the footer
	}
	k, b, err := r.frame()
	if err != nil {
		return err
	}
	if k == kindEnd {
		return r.footer(b, prefix)
	}
	if !r.sec.allows(k) {
		return corruptf("record %d: a record of kind %d does not belong in section %s", r.count, k, r.sec)
	}
	var into *slots
	if r.borrow {
		into = &r.slots
	}
	rec, err := decodeRecordInterned(k, b, &r.strs, into)
	if err != nil {
		return corruptf("record %d: %v", r.count, err)
	}
	if kg := rec.keyGroup(); kg >= 0 {
		if r.want != nil && r.want.KeyGroups != nil && !r.want.KeyGroups.Contains(kg) {
			return corruptf("record %d: key group %d outside the file's [%d, %d)", r.count, kg, r.want.KeyGroups.Start, r.want.KeyGroups.End)
		}
		if kg < r.lastKG {
			return corruptf("record %d: key group %d after key group %d", r.count, kg, r.lastKG)
		}
		r.lastKG = kg
	}
	if r.check != nil {
		if err := r.check(rec); err != nil {
			return corruptf("record %d: %v", r.count, err)
		}
	}
	r.count++
	r.rec = rec
	return nil
}

func (r *RecordReader) footer(b, prefix []byte) error {
	d := &body{b: b}
	count := d.uvarint("record count")
	if d.err != nil || len(d.b) != sha256.Size {
		return corruptf("malformed footer")
	}
	if count != uint64(r.count) {
		return corruptf("footer says %d records, the file has %d", count, r.count)
	}
	if !bytes.Equal(d.b, prefix) {
		return corruptf("footer's SHA-256 %x does not match the content %x", d.b, prefix)
	}
	if _, err := r.src.ReadByte(); err == nil {
		return corruptf("data after the footer at byte %d", r.size)
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	if w := r.want; w != nil {
		sum := hex.EncodeToString(r.h.Sum(nil))
		switch {
		case r.size != w.Size:
			return corruptf("%d bytes, the metadata records %d", r.size, w.Size)
		case sum != w.SHA256:
			return corruptf("sha256:%s, the metadata records sha256:%s", sum, w.SHA256)
		case r.count != w.Records:
			return corruptf("%d records, the metadata records %d", r.count, w.Records)
		}
	}
	r.done = true
	return nil
}
