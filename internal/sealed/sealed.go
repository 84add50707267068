// Package sealed owns weir's sealed documents: one line of JSON that says
// its "format" and "version", then a line "weir-checksum sha256:<hex>"
// with the SHA-256 of the line before it. Checkpoint and savepoint
// metadata, and a checkpoint upload's intent, are written this way, so a
// truncated or damaged file is told from a good one, and a reader refuses
// documents of another kind or of a newer version before it decodes them.
package sealed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// trailerPrefix starts the last line of a sealed document.
const trailerPrefix = "weir-checksum sha256:"

// Seal appends a newline and the checksum line to a one-line document.
func Seal(body []byte) []byte {
	body = append(body, '\n')
	sum := sha256.Sum256(body)
	out := append(body, trailerPrefix...)
	out = hex.AppendEncode(out, sum[:])
	return append(out, '\n')
}

// Unseal checks the checksum line of sealed data and returns the document
// (with its newline). Its errors say what is wrong, for the caller to wrap
// with the file's name.
func Unseal(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, errors.New("empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("truncated: does not end with a checksum line")
	}
	cut := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	body, trailer := data[:cut], data[cut:len(data)-1]
	hexSum, ok := bytes.CutPrefix(trailer, []byte(trailerPrefix))
	if !ok || cut == 0 {
		return nil, fmt.Errorf("truncated or not written by weir: no %q line at the end", trailerPrefix)
	}
	want := make([]byte, sha256.Size)
	if len(hexSum) != hex.EncodedLen(sha256.Size) {
		return nil, fmt.Errorf("malformed checksum line %.80q", trailer)
	}
	if _, err := hex.Decode(want, hexSum); err != nil {
		return nil, fmt.Errorf("malformed checksum line %.80q: %v", trailer, err)
	}
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("checksum mismatch: content is sha256:%x, trailer says sha256:%x", got, want)
	}
	return body, nil
}

// Problem says what is wrong with a document Decode refused.
type Problem int

const (
	// Corrupt: damaged, truncated or malformed.
	Corrupt Problem = iota
	// OtherFormat: sealed, but of another kind of document.
	OtherFormat
	// Newer: of a version newer than the reader reads.
	Newer
)

// Error is Decode's refusal: the problem, and a message for the caller to
// wrap with the file's name and its own sentinel for the problem.
type Error struct {
	Problem Problem
	Msg     string
}

func (e *Error) Error() string { return e.Msg }

// Decode unseals data, checks that it is a document of format at a version
// in [1, maxVersion], and decodes it strictly (no unknown fields, nothing
// after it) into v. It returns the document's version.
func Decode(data []byte, format string, maxVersion int, v any) (int, *Error) {
	body, err := Unseal(data)
	if err != nil {
		return 0, &Error{Corrupt, err.Error()}
	}
	// The checksum matches, so the writer produced these bytes. Check what
	// kind of document it is before decoding it strictly.
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return 0, &Error{Corrupt, fmt.Sprintf("malformed JSON: %v", err)}
	}
	switch {
	case head.Format != format:
		return 0, &Error{OtherFormat, fmt.Sprintf("format %q, want %q", head.Format, format)}
	case head.Version > maxVersion:
		return 0, &Error{Newer, fmt.Sprintf("format version %d; this build reads versions up to %d: use a newer weir", head.Version, maxVersion)}
	case head.Version < 1:
		return 0, &Error{Corrupt, fmt.Sprintf("invalid format version %d", head.Version)}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return 0, &Error{Corrupt, fmt.Sprintf("malformed version %d document: %v", head.Version, err)}
	}
	if dec.More() {
		return 0, &Error{Corrupt, "invalid character after top-level value"}
	}
	return head.Version, nil
}
