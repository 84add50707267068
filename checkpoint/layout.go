package checkpoint

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Object names in a store (relative to its root):
//
//	<job>/shared/<sha256>-<nonce>.sst       immutable files, named by content
//	                                         and upload
//	<job>/chk-<N>/<stage>-<subtask>/<local>  mutable files of one subtask
//	<job>/chk-<N>/<stage>-<subtask>/_files   the subtask's file list, written
//	                                         before its uploads (an intent)
//	<job>/chk-<N>/_metadata                  written last, create-only: commit
//	<job>/_lease                             held by the job writing these
//	                                         (lease.go)
//
// File.Remote names are relative to <job>/.
const (
	sharedDir    = "shared/"
	metadataBase = "_metadata"
	intentBase   = "_files"
	chkPrefix    = "chk-"
)

// MetadataName returns the object name of checkpoint id's metadata.
func MetadataName(job string, id int64) string {
	return fmt.Sprintf("%s/%s%d/%s", job, chkPrefix, id, metadataBase)
}

// privatePrefix is the prefix, relative to <job>/, of checkpoint id's files.
func privatePrefix(id int64) string { return fmt.Sprintf("%s%d/", chkPrefix, id) }

// subtaskPrefix is the prefix, relative to <job>/, of one subtask's mutable
// files in checkpoint id. The stage ID is escaped so that any ID gives one
// valid path component and different IDs never share a directory.
func subtaskPrefix(id int64, sub SubtaskID) string {
	return fmt.Sprintf("%s%s-%d/", privatePrefix(id), escapeComponent(sub.Stage), sub.Subtask)
}

// sharedName is the name, relative to <job>/, of an immutable file with
// content hash sum, uploaded by the upload with the given nonce, with the
// extension of local (".sst", ".blob").
//
// The hash makes the name independent of Pebble's file numbers (reused after
// a restore) and lets Restore verify the content; the nonce makes every
// upload create a name that never existed before, which is what makes
// Retain safe while uploads run (see Retain). Identical content is still
// stored once per checkpoint lineage: an Uploader reuses the object of the
// last committed checkpoint by hash.
func sharedName(sum, nonce, local string) string {
	return sharedDir + sum + "-" + nonce + path.Ext(local)
}

// isShared reports whether a Pebble file is immutable once written, so it can
// be stored once by content and referenced by many checkpoints.
func isShared(local string) bool {
	switch path.Ext(local) {
	case ".sst", ".blob":
		return true
	}
	return false
}

// parseCheckpointObject splits "<job>/chk-<N>/<rest>" into N and rest. Names
// whose N is not in canonical decimal form are not checkpoint objects.
func parseCheckpointObject(job, name string) (id int64, rest string, ok bool) {
	s, ok := strings.CutPrefix(name, job+"/"+chkPrefix)
	if !ok {
		return 0, "", false
	}
	num, rest, ok := strings.Cut(s, "/")
	if !ok {
		return 0, "", false
	}
	id, err := strconv.ParseInt(num, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != num {
		return 0, "", false
	}
	return id, rest, true
}

// escapeComponent keeps [A-Za-z0-9_] and percent-encodes every other byte
// (including '-', '.', '/', '%'), which is injective and never yields a name
// starting with '.'.
func escapeComponent(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
