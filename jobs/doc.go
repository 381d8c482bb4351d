// Package jobs compiles a Butter project into a Nomad job and renders that
// job as HCL or JSON that `nomad job validate` and `nomad job run` accept
// unchanged.
//
// One project is one job. Each pool becomes a task group whose single task
// runs the butter driver; the task's config lists the pool's functions,
// and artifact blocks fetch their bundles by content hash. Rendering walks
// the nomad/api structs through their hcl tags with hclwrite, never with
// string templates, so quoting and escaping are always right.
//
// Neighbours: package spec decodes the project; package bundle computes
// the content hashes; the control plane (scheduler) registers the job.
package jobs
