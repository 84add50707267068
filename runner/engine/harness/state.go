package harness

// Cell is one cell of user state: a stateful transform's state, for one
// key in one window (key and window encoded as the SDK sends them).
type Cell struct {
	Transform, StateID string
	Window, Key        []byte
}

// State is a bundle's state as the engine keeps it: the user state of a
// stateful stage's keys and the stage's side inputs, in typed calls. A
// worker translates what its SDK asks (Fn State API requests, or the Go
// SDK's state calls in process) into these; values are the encoded
// elements the SDK reads and writes, concatenated.
type State interface {
	UserState
	SideInputs
}

// UserState is the user state of a stateful bundle's keys. Bag state is
// also what the Go SDK keeps Value and Combining state in.
type UserState interface {
	ReadBag(c Cell) ([]byte, error)
	AppendBag(c Cell, data []byte) error
	ClearBag(c Cell) error

	// Multimap state: the values of one map key, every map key, and
	// clearing one map key or all of them.
	ReadMap(c Cell, mapKey []byte) ([]byte, error)
	AppendMap(c Cell, mapKey, data []byte) error
	ClearMapKey(c Cell, mapKey []byte) error
	MapKeys(c Cell) ([]byte, error)
	ClearMap(c Cell) error

	// Ordered list state: entries with sort keys in [start, end). An
	// append holds one entry, as the Go SDK frames them.
	ReadOrdered(c Cell, start, end int64) ([]byte, error)
	AppendOrdered(c Cell, data []byte) error
	ClearOrdered(c Cell, start, end int64) error
}

// SideInputs are a bundle's side inputs, read a page at a time: each call
// returns at most max bytes of whole elements from where token says
// (empty: the start) and the token of the rest (nil at the end).
type SideInputs interface {
	// SideIterable reads side input side of transform in window.
	SideIterable(transform, side string, window, token []byte, max int) (data, next []byte, err error)
	// SideMulti reads the values of key in a multimap side input.
	SideMulti(transform, side string, window, key, token []byte, max int) (data, next []byte, err error)
	// SideKeys reads the keys of a multimap side input.
	SideKeys(transform, side string, window, token []byte, max int) (data, next []byte, err error)
}
