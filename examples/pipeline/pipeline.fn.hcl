# pipeline: `sed e=s/hate/love/ | to-upper`, bound to POST /shout.
#
#   curl -d 'i hate mondays' http://127.0.0.1:8080/shout   ->   I LOVE MONDAYS

project "pipeline" {}

# An exec function gets a step's options as flags after its command:
# { e = "s/hate/love/" } runs `sed -e s/hate/love/`.
function "sed" {
  runtime = "exec"
  command = ["sed", "-u"]
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
  steps = [
    { function = function.sed, options = { e = "s/hate/love/" } },
    function.to-upper,
  ]

  trigger "http" {
    route = "POST /shout"
  }
}
