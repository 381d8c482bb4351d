package jobs

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/hashicorp/nomad/api"
)

// BlobSigParam is the query parameter of a signed blob URL: the control
// plane serves a blob without a token to a URL that carries its
// signature (scheduler/acl.go).
const BlobSigParam = "butter_sig"

// blobURLRE finds the hex digest of a blob URL (WithBlobURL's).
var blobURLRE = regexp.MustCompile(`/sha256/([0-9a-f]{64})$`)

// SignArtifacts sets BlobSigParam on every artifact URL of job that
// fetches a blob (".../sha256/<hex>") to sig(hex); sig answers "" to leave
// one as it is. A signature already there is replaced, so signing again
// is harmless.
func SignArtifacts(job *api.Job, sig func(hex string) (string, error)) error {
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			for _, a := range t.Artifacts {
				if a == nil || a.GetterSource == nil {
					continue
				}
				u, err := url.Parse(*a.GetterSource)
				if err != nil {
					continue // not a URL this package wrote
				}
				m := blobURLRE.FindStringSubmatch(u.Path)
				if m == nil {
					continue
				}
				s, err := sig(m[1])
				if err != nil {
					return fmt.Errorf("sign the blob URLs of job %s: %w", deref(job.ID), err)
				}
				if s == "" {
					continue
				}
				q := u.Query()
				q.Set(BlobSigParam, s)
				u.RawQuery = q.Encode()
				src := u.String()
				a.GetterSource = &src
			}
		}
	}
	return nil
}
