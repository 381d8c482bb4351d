module echo-go

go 1.26

require github.com/butterfn/butter v0.0.0

// The example builds against the SDK in this repository.
replace github.com/butterfn/butter => ../../../..
