package plan

// Transform URNs weir knows.
const (
	URNImpulse       = "beam:transform:impulse:v1"
	URNParDo         = "beam:transform:pardo:v1"
	URNFlatten       = "beam:transform:flatten:v1"
	URNGBK           = "beam:transform:group_by_key:v1"
	URNReshuffle     = "beam:transform:reshuffle:v1"
	URNCombinePerKey = "beam:transform:combine_per_key:v1"
	URNWindowInto    = "beam:transform:window_into:v1"
	URNMapWindows    = "beam:transform:map_windows:v1"
	URNMergeWindows  = "beam:transform:merge_windows:v1"
	URNToString      = "beam:transform:to_string:v1"
	URNTestStream    = "beam:transform:teststream:v1"

	URNCombinePre     = "beam:transform:combine_per_key_precombine:v1"
	URNCombineMerge   = "beam:transform:combine_per_key_merge_accumulators:v1"
	URNCombineExtract = "beam:transform:combine_per_key_extract_outputs:v1"
	URNCombineConvert = "beam:transform:combine_per_key_convert_to_accumulators:v1"

	URNPairWithRestriction  = "beam:transform:sdf_pair_with_restriction:v1"
	URNSplitAndSize         = "beam:transform:sdf_split_and_size_restrictions:v1"
	URNProcessSizedElements = "beam:transform:sdf_process_sized_element_and_restrictions:v1"
	URNTruncateSized        = "beam:transform:sdf_truncate_sized_restrictions:v1"

	URNDataSource = "beam:runner:source:v1"
	URNDataSink   = "beam:runner:sink:v1"

	URNBagUserState         = "beam:user_state:bag:v1"
	URNMultimapUserState    = "beam:user_state:multimap:v1"
	URNOrderedListUserState = "beam:user_state:ordered_list:v1"

	URNIterableSideInput = "beam:side_input:iterable:v1"
	URNMultimapSideInput = "beam:side_input:multimap:v1"

	URNGlobalWindows  = "beam:window_fn:global_windows:v1"
	URNFixedWindows   = "beam:window_fn:fixed_windows:v1"
	URNSlidingWindows = "beam:window_fn:sliding_windows:v1"
	URNSessions       = "beam:window_fn:session_windows:v1"

	URNEnvExternal = "beam:env:external:v1"
	URNEnvProcess  = "beam:env:process:v1"

	ReqSplittableDoFn  = "beam:requirement:pardo:splittable_dofn:v1"
	ReqFinalization    = "beam:requirement:pardo:finalization:v1"
	ReqStateful        = "beam:requirement:pardo:stateful:v1"
	ReqTimeSortedInput = "beam:requirement:pardo:time_sorted_input:v1"
	ReqStableInput     = "beam:requirement:pardo:stable_input:v1"
	ReqOnWindowExpiry  = "beam:requirement:pardo:on_window_expiration:v1"
)

// sdkTransforms are leaf transforms the SDK harness executes inside a stage.
var sdkTransforms = map[string]bool{
	URNParDo: true, URNWindowInto: true, URNMapWindows: true, URNMergeWindows: true, URNToString: true,
	URNCombinePre: true, URNCombineMerge: true, URNCombineExtract: true, URNCombineConvert: true,
	URNPairWithRestriction: true, URNSplitAndSize: true, URNProcessSizedElements: true, URNTruncateSized: true,
}
