package scheduler

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// Blobs beside Raft: bundles and schemas are stored by content hash in the
// data dir, never in the log. Any server serves them to Nomad's artifact
// fetcher at /v1/blobs/sha256/<hex>; a server that lacks one fetches it
// from a peer, checks its hash, keeps it and serves it.

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Server) blobPath(hexsum string) string {
	return filepath.Join(s.cfg.DataDir, "blobs", "sha256", hexsum)
}

// putBlob stores r under its SHA-256, which must equal hexsum, and of at
// most Config.MaxBlobBytes. It writes a temporary file and renames it into
// place only once the content is whole and checked: a failed or
// interrupted upload leaves nothing.
func (s *Server) putBlob(hexsum string, r io.Reader) error {
	dir := filepath.Dir(s.blobPath(hexsum))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, s.cfg.MaxBlobBytes+1))
	if err != nil {
		tmp.Close()
		return err
	}
	if n > s.cfg.MaxBlobBytes {
		tmp.Close()
		return &http.MaxBytesError{Limit: s.cfg.MaxBlobBytes}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexsum {
		return fmt.Errorf("content hashes to sha256:%s, not sha256:%s", got, hexsum)
	}
	return os.Rename(tmp.Name(), s.blobPath(hexsum))
}

// removePartialBlobs removes the temporary files of uploads that a
// previous run of the server did not finish (it stopped midway).
func (s *Server) removePartialBlobs() {
	partial, _ := filepath.Glob(filepath.Join(filepath.Dir(s.blobPath("x")), ".upload-*"))
	for _, p := range partial {
		if err := os.Remove(p); err != nil {
			s.log.Warn("cannot remove a partial blob upload", "file", p, "error", err)
		}
	}
}

// fetchBlob copies a blob from the first peer that has it. With ACLs on,
// it asks with the blob's signature, or (before any job was signed) with
// the token of the request it serves.
func (s *Server) fetchBlob(hexsum, token string) error {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	client := s.peerClient(time.Minute)
	for _, sv := range f.Configuration().Servers {
		if string(sv.ID) == s.cfg.HTTPAddr {
			continue
		}
		u := s.peerURL(string(sv.ID)) + "/v1/blobs/sha256/" + hexsum
		if q := s.blobSigQuery(hexsum); q != "" {
			u += "?" + q // peers check the signature, as for Nomad's getter (acl.go)
		}
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("X-Butter-Forwarded", s.cfg.HTTPAddr) // peers do not ask further
		if token != "" {
			req.Header.Set(api.HeaderToken, token)
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		if resp.StatusCode == 200 {
			err = s.putBlob(hexsum, resp.Body)
			resp.Body.Close()
			if err == nil {
				return nil
			}
			s.log.Warn("a peer's blob did not match its hash", "peer", sv.ID, "error", err)
			continue
		}
		resp.Body.Close()
	}
	return errors.New("no server has it")
}

// serveBlob and storeBlob run behind checkPath, which checks {hex}.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	hexsum := r.PathValue("hex")
	path := s.blobPath(hexsum)
	if _, err := os.Stat(path); err != nil {
		if r.Header.Get("X-Butter-Forwarded") != "" {
			writeErr(w, 404, fmt.Errorf("no blob sha256:%s here", hexsum))
			return
		}
		token, _ := secretOf(r)
		if err := s.fetchBlob(hexsum, token); err != nil {
			writeErr(w, 404, fmt.Errorf("blob sha256:%s: %w", hexsum, err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeFile(w, r, path)
}

func (s *Server) storeBlob(w http.ResponseWriter, r *http.Request) {
	hexsum := r.PathValue("hex")
	if err := s.putBlob(hexsum, r.Body); err != nil {
		var mbe *http.MaxBytesError
		if lim, ok := r.Context().Value(bodyLimitKey{}).(*bodyLimit); ok && errors.As(err, &mbe) {
			s.tooLarge(w, r, lim)
			return
		}
		writeErr(w, 400, fmt.Errorf("blob sha256:%s: %w", hexsum, err))
		return
	}
	resp := api.BlobPutResponse{Digest: "sha256:" + hexsum}
	if s.cfg.ACL {
		// Whoever may store a blob may deploy: a signature that lets a
		// Nomad client fetch this blob without a token is no more than
		// the deployer would sign into the job (butter job render
		// -upload puts it in the artifact's URL).
		// The leader makes the signing key on first need; a follower
		// signs with the key it has replicated, and answers no signature
		// while there is none (the blob is stored all the same).
		var key []byte
		var err error
		if s.raft.State() == raft.Leader {
			key, err = s.blobKey()
		} else {
			var k string
			s.fsm.Read(func(st *fsm.State) { k = st.BlobKey })
			key, err = hex.DecodeString(k)
		}
		if err == nil && len(key) > 0 {
			resp.Signature = blobSig(key, hexsum)
		} else {
			s.log.Debug("blob stored unsigned: no signing key on this node yet", "blob", hexsum, "error", err)
		}
	}
	writeJSON(w, 200, resp)
}
