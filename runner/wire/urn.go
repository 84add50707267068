package wire

// URNs of the coders this package knows. The walkable ones are those whose
// encoding the runner can step over; see [LengthPrefixUnknown].
const (
	URNBytes               = "beam:coder:bytes:v1"
	URNStringUTF8          = "beam:coder:string_utf8:v1"
	URNVarint              = "beam:coder:varint:v1"
	URNBool                = "beam:coder:bool:v1"
	URNDouble              = "beam:coder:double:v1"
	URNKV                  = "beam:coder:kv:v1"
	URNIterable            = "beam:coder:iterable:v1"
	URNLengthPrefix        = "beam:coder:length_prefix:v1"
	URNGlobalWindow        = "beam:coder:global_window:v1"
	URNIntervalWindow      = "beam:coder:interval_window:v1"
	URNWindowedValue       = "beam:coder:windowed_value:v1"
	URNParamWindowedValue  = "beam:coder:param_windowed_value:v1"
	URNNullable            = "beam:coder:nullable:v1"
	URNTimer               = "beam:coder:timer:v1"
	URNRow                 = "beam:coder:row:v1"
	URNStateBackedIterable = "beam:coder:state_backed_iterable:v1"
	URNShardedKey          = "beam:coder:sharded_key:v1"

	// URNGoCustom is the Go SDK's custom coder. The Go SDK already writes it
	// as a varint length followed by the bytes, and reads
	// length_prefix(custom) as the custom coder itself, so wrapping it is safe.
	URNGoCustom = "beam:go:coder:custom:v1"
)

// leafURN reports whether urn is a coder without components whose encoding
// the runner can step over.
func leafURN(urn string) bool {
	switch urn {
	case URNBytes, URNStringUTF8, URNVarint, URNBool, URNDouble,
		URNGlobalWindow, URNIntervalWindow:
		return true
	}
	return false
}

// structuralArity returns the number of components of a structural coder
// (one whose encoding is walkable when its components are), or -1 if urn is
// not structural.
func structuralArity(urn string) int {
	switch urn {
	case URNKV, URNWindowedValue, URNParamWindowedValue, URNTimer:
		return 2
	case URNIterable, URNNullable:
		return 1
	}
	return -1
}
