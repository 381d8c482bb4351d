package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// BlobPutResponse answers PUT /v1/blobs/sha256/{hex}.
type BlobPutResponse struct {
	// Digest is "sha256:<hex>".
	Digest string `json:"digest"`
	// Signature, on a server with ACLs on, lets anyone fetch this blob
	// without a token: GET /v1/blobs/sha256/<hex>?butter_sig=<signature>
	// (what the deployer puts in the artifact URLs of the jobs it
	// registers, and `butter job render -upload` in the jobs it renders).
	Signature string `json:"signature,omitempty"`
}

// Blobs stores and fetches bundles and schemas by content hash. Blobs
// live beside Raft, in each server's data dir; a server that lacks one
// fetches it from a peer.
type Blobs struct{ c *Client }

// Blobs returns the blob endpoints.
func (c *Client) Blobs() *Blobs { return &Blobs{c} }

// URL returns the base URL that Nomad's artifact fetcher reads blobs
// from: URL()+"/sha256/<hex>".
func (b *Blobs) URL() string { return b.c.Address() + "/v1/blobs" }

// blobPath checks digest ("sha256:<hex>" or bare hex) and returns its path.
func blobPath(digest string) (string, error) {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("blob digest %q: want sha256:<64 hex digits>", digest)
	}
	return "/v1/blobs/sha256/" + hex, nil
}

// Put stores content of size bytes (-1: unknown) under digest
// ("sha256:<hex>" or the hex alone). The server checks the content
// against the digest (400 when it does not match) and its size against
// its limit (413, with a message that says the limit).
func (b *Blobs) Put(ctx context.Context, digest string, content io.Reader, size int64) (*BlobPutResponse, error) {
	path, err := blobPath(digest)
	if err != nil {
		return nil, err
	}
	header := http.Header{"Content-Type": {"application/octet-stream"}}
	if size < 0 || size > 1<<20 {
		// A blob over the server's limit (413) is refused before it is
		// sent.
		header.Set("Expect", "100-continue")
	}
	resp, err := b.c.send(ctx, request{method: http.MethodPut, path: path, body: content, size: size, header: header})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out BlobPutResponse
	if err := decode(resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get returns the blob's content; a blob no server has is a 404
// *StatusError. The caller closes the stream.
func (b *Blobs) Get(ctx context.Context, digest string) (io.ReadCloser, error) {
	path, err := blobPath(digest)
	if err != nil {
		return nil, err
	}
	resp, err := b.c.send(ctx, request{method: http.MethodGet, path: path})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
