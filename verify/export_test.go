package verify

// Unexported functions the external tests (package verify_test) call.
var (
	LoadTrustAnchors = loadTrustAnchors
)
