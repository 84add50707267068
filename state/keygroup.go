package state

import (
	"encoding/binary"
	"math/bits"
)

// DefaultMaxParallelism is the number of key groups of a job unless configured.
const DefaultMaxParallelism = 128

// MaxKeyGroups is the upper bound on maxParallelism (as in Flink). Key groups
// are stored as 2 big-endian bytes, and values from MaxKeyGroups up are
// reserved for per-structure metadata keys.
const MaxKeyGroups = 1 << 15

// KeyGroup returns the key group of an encoded key:
// murmur3_32(seed 0)(key) mod maxParallelism. It panics if maxParallelism < 1.
func KeyGroup(key []byte, maxParallelism int) int {
	if maxParallelism < 1 {
		panic("state: KeyGroup: maxParallelism must be >= 1")
	}
	return int(murmur3(key, 0) % uint32(maxParallelism))
}

// SubtaskForKeyGroup returns the subtask (of parallelism subtasks) that owns
// keyGroup: keyGroup * parallelism / maxParallelism.
func SubtaskForKeyGroup(keyGroup, parallelism, maxParallelism int) int {
	return keyGroup * parallelism / maxParallelism
}

// KeyGroupRange returns the contiguous range [start, end) of key groups owned
// by subtask: exactly the key groups kg with SubtaskForKeyGroup(kg, parallelism,
// maxParallelism) == subtask. If parallelism > maxParallelism some subtasks own
// an empty range (start == end).
func KeyGroupRange(subtask, parallelism, maxParallelism int) (start, end int) {
	// kg belongs to s iff s*maxP <= kg*P < (s+1)*maxP,
	// iff ceil(s*maxP/P) <= kg < ceil((s+1)*maxP/P).
	return ceilDiv(subtask*maxParallelism, parallelism), ceilDiv((subtask+1)*maxParallelism, parallelism)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// murmur3 is MurmurHash3 x86_32.
func murmur3(data []byte, seed uint32) uint32 {
	const (
		c1 = 0xcc9e2d51
		c2 = 0x1b873593
	)
	h := seed
	n := len(data)
	for len(data) >= 4 {
		k := binary.LittleEndian.Uint32(data)
		data = data[4:]
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	var k uint32
	switch len(data) {
	case 3:
		k ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(data[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
