// Package wire owns the runner's view of Beam coders: rewriting a pipeline's
// coders so every element can be walked as bytes, and splitting, reading and
// writing encoded elements without decoding user values.
//
// The runner touches bytes, not values. Elements cross it as encoded
// beam:coder:windowed_value:v1 values (nested context, concatenated on the Fn
// API data stream). To find element boundaries, split a KV into key and value
// bytes, and read or write the windowed-value header (timestamp, windows,
// pane), the runner only needs to know the encodings of Beam's standard
// coders. Every coder it does not know (rows, SDK custom coders, anything with
// an unknown URN) is wrapped in beam:coder:length_prefix:v1 by
// [LengthPrefixUnknown] before the coders are sent to an SDK harness, so the
// SDK writes such values behind a varint length and the runner can step over
// them without understanding them.
//
// The pieces:
//
//   - [LengthPrefixUnknown], [AddCoder], [AddWindowedValue] edit a pipeline's
//     coder map (map[string]*pipepb.Coder) deterministically.
//   - [Build] turns a coder ID into a walkable [Coder] tree; [Coder.Skip] finds
//     the end of one nested-context element and [Coder.SplitKV] splits a KV.
//   - [WVCoder] walks windowed values: [WVCoder.Next] and [WVCoder.ForEach]
//     return [Element]s whose fields are slices of the input buffer, and
//     [AppendWindowedValue] writes one back.
//   - Instants, interval and global windows, panes, varints and iterables
//     have Append*/Read* helpers that write exactly what Beam's encoders write.
//
// Nothing here panics on malformed input: every reader checks bounds and
// returns an error wrapping [ErrTruncated] or [ErrCorrupt], so corrupt data
// from an SDK fails its bundle instead of the runner.
package wire
