// Package jobs compiles a Butter project into a Nomad job and renders that
// job as HCL or JSON that `nomad job validate` and `nomad job run` accept
// unchanged.
//
// One project is one job. Each pool becomes a task group whose single task
// runs the butter driver; the task's config is the pool's config
// (pool.Config, built from the spec by this package alone, also for local
// pools: LocalConfig), and artifact blocks fetch its bundles and schemas by
// content hash. Rendering walks
// the nomad/api structs through their hcl tags with hclwrite, never with
// string templates, so quoting and escaping are always right.
//
// Neighbours: package spec decodes the project; package bundle computes
// the content hashes; package pool defines the config the driver decodes
// and the pool runs; the control plane (scheduler) registers the job.
package jobs
