# pipeline: `sed | to-upper`, bound to POST /shout.
#
#   echo 'I hate this' | butter invoke --local examples/pipeline "sed | to-upper"   ->   I LOVE THIS

project "pipeline" {}

# An exec function gets its options as flags after its command:
# { e = "s/hate/love/" } runs `sed -u -e s/hate/love/`. A pipeline step
# may override them: `sed e=s/love/hate/ | to-upper`.
function "sed" {
  runtime = "exec"
  command = ["sed", "-u"]
  options = { e = "s/hate/love/" }
  timeout = "2s"
  memory  = 16
}

function "to-upper" {
  runtime = "exec"
  command = ["tr", "[:lower:]", "[:upper:]"]
  timeout = "2s"
  memory  = 16
}

pipeline "shout" {
  steps = [function.sed, function.to-upper]

  trigger "http" {
    route = "POST /shout"
  }
}
