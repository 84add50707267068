package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestRunSmall runs the whole benchmark on a small state with each storage
// and checks correctness only, never timings: run itself fails unless the
// restored DB has every key and the sampled keys read back with their last
// values; here we also check what the checkpoints uploaded.
func TestRunSmall(t *testing.T) {
	for _, st := range []string{"file", "gcs"} {
		t.Run(st, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.StateBytes = 8 << 20
			cfg.Intervals = 3
			cfg.Storage = st
			cfg.VerifyKeys = 500
			cfg.CacheBytes = 8 << 20
			cfg.TempDir = t.TempDir()
			res, err := run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}

			r := res.Recovery
			if r.Verified != cfg.VerifyKeys || r.ScannedKeys != res.Keys || res.Keys < 5000 {
				t.Errorf("recovery verified %d keys (want %d) and found %d of %d", r.Verified, cfg.VerifyKeys, r.ScannedKeys, res.Keys)
			}
			if want := int64(cfg.Intervals) + 1; r.CheckpointID != want {
				t.Errorf("recovered checkpoint %d, want %d", r.CheckpointID, want)
			}
			if r.ReadBytes < r.Bytes {
				t.Errorf("recovery read %d bytes from storage, less than the checkpoint's %d", r.ReadBytes, r.Bytes)
			}

			if n := len(res.Checkpoints); n != cfg.Intervals+2 {
				t.Fatalf("%d checkpoints, want %d", n, cfg.Intervals+2)
			}
			full := res.Checkpoints[0]
			if full.Incremental || full.UploadedBytes != full.FullBytes || full.FullBytes < res.StateBytes*9/10 {
				t.Errorf("full checkpoint uploaded %d of %d bytes, state is %d bytes", full.UploadedBytes, full.FullBytes, res.StateBytes)
			}
			// The first incremental checkpoint follows a settled DB: it has
			// one new sstable (1% of the keys) and the small mutable files.
			// Later ones may carry the output of compactions, which on a
			// state this small can rewrite all of it.
			if c := res.Checkpoints[1]; !c.Incremental || c.UploadedBytes >= c.FullBytes/4 || c.ReusedFiles == 0 {
				t.Errorf("checkpoint 2 (incremental) uploaded %d of %d bytes, reused %d files", c.UploadedBytes, c.FullBytes, c.ReusedFiles)
			}
			// The restored DB checkpoints too. What it uploads is not
			// checked: opening it may compact its one L0 sstable into the
			// rest, which here rewrites nearly everything.
			if c := res.Checkpoints[len(res.Checkpoints)-1]; !c.AfterRestore || c.ID != r.CheckpointID+1 || c.Files == 0 {
				t.Errorf("last checkpoint %+v, want checkpoint %d of the restored DB", c, r.CheckpointID+1)
			}
			for _, c := range res.Checkpoints {
				if c.UploadedBytes > c.WrittenBytes || c.StoredBytes < c.FullBytes {
					t.Errorf("checkpoint %d: uploaded %d, written %d, stored %d, full %d bytes", c.ID, c.UploadedBytes, c.WrittenBytes, c.StoredBytes, c.FullBytes)
				}
			}

			var out strings.Builder
			printReport(&out, cfg, res)
			t.Log("\n" + out.String())
			if left, err := os.ReadDir(cfg.TempDir); err != nil || len(left) != 0 {
				t.Errorf("run left %v behind (%v)", left, err)
			}
		})
	}
}

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "8MiB": 8 << 20, "1.5KiB": 1536, "1000": 1000, "12B": 12} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1MiB", "0", "1TiB"} {
		var s sizeFlag
		if err := s.Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded", bad)
		}
	}
}
