package verify

// Unexported functions the external tests (package verify_test) call.
var (
	Public           = public
	LoadTrustAnchors = loadTrustAnchors
)
