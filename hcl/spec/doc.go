// Package spec is Butter's spec language: the model of a project, the
// decoder that turns a directory of *.fn.hcl files into that model, and the
// validation that reports every problem with file:line:col, a summary and a
// detail that says how to fix it.
//
// A project is a directory tree of *.fn.hcl files. Its blocks are:
//
//	project "name" { ... }      optional; the directory name otherwise
//	stream "name" { ... }       a Kafka topic
//	function "name" { ... }     a function with its triggers
//	pipeline "name" { ... }     a chain of functions (a | b | c)
//	pool "name" { ... }         optional; a pool's scaling policy (scaling.go)
//
// References between blocks are HCL traversals (stream.readings,
// function.sed, pipeline.shout), resolved while decoding.
//
// The project block's openapi argument lists OpenAPI 3 documents; each
// operation whose operationId names a function or a pipeline becomes an
// http trigger of it, with x-butter-* extensions as the trigger's
// arguments (openapi.go, docs/spec-language.md).
//
// Neighbours: package jobs compiles a *Project into a Nomad job; package
// bundle packs each function's source into a content-addressed tarball;
// cmd/butter prints the diagnostics (see WriteDiagnostics and
// WriteDiagnosticsJSON in this package).
package spec
