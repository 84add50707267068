package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// PutHashed puts the bytes of r as object (Put) and returns their count
// and lowercase hex SHA-256: what a checkpoint or savepoint records of a
// file it stores.
func PutHashed(ctx context.Context, st Storage, object string, r io.Reader) (size int64, sha string, err error) {
	h := sha256.New()
	c := &countingReader{r: io.TeeReader(r, h)}
	if err := st.Put(ctx, object, c); err != nil {
		return c.n, "", err
	}
	return c.n, hex.EncodeToString(h.Sum(nil)), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
