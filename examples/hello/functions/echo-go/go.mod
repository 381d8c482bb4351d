module echo-go

go 1.26

require github.com/butterfn/butter/sdk/go v0.0.0

// The pool builds Go functions against the SDK it ships; this replace lets
// go build and editors work on the example in place.
replace github.com/butterfn/butter/sdk/go => ../../../../sdk/go
