package names

import "strings"

// The paths of OpenFaaS's gateway API, which a Butter gateway serves when
// it is started with OpenFaaS compatibility on (`butter gateway -openfaas`,
// docs/gateway.md). While it is on, they are the gateway's own: a route
// may not take them (see OpenFaaSPath).
const (
	// OpenFaaSFunctionPrefix starts a synchronous call:
	// /function/{name}[/path].
	OpenFaaSFunctionPrefix = "/function/"
	// OpenFaaSAsyncPrefix starts an asynchronous call:
	// /async-function/{name}[/path].
	OpenFaaSAsyncPrefix = "/async-function/"
	// OpenFaaSSystemPrefix starts OpenFaaS's system API, of which the
	// gateway serves GET /system/functions.
	OpenFaaSSystemPrefix = "/system/"
	// OpenFaaSFunctionsPath lists the deployed functions.
	OpenFaaSFunctionsPath = OpenFaaSSystemPrefix + "functions"
)

// OpenFaaSPath reports whether a route's path (a ServeMux path, {params}
// and all) is one of OpenFaaS's gateway API: /function, /async-function,
// /system and every path under them. A gateway with OpenFaaS
// compatibility on refuses such a route.
func OpenFaaSPath(path string) bool {
	for _, p := range []string{OpenFaaSFunctionPrefix, OpenFaaSAsyncPrefix, OpenFaaSSystemPrefix} {
		if path+"/" == p || strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}
