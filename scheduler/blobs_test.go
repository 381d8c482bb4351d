package scheduler_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/scheduler"
)

func freeAddr(t *testing.T) string { return testport.Addr(t) }

// cluster starts three servers in this process, on real TCP transports.
func cluster(t *testing.T) []*scheduler.Server {
	t.Helper()
	var https, rafts []string
	for range 3 {
		https, rafts = append(https, freeAddr(t)), append(rafts, freeAddr(t))
	}
	var servers []*scheduler.Server
	for i := range 3 {
		var join []string
		for j := range 3 {
			if j != i {
				join = append(join, https[j])
			}
		}
		s, err := scheduler.Start(scheduler.Config{
			DataDir: filepath.Join(t.TempDir(), fmt.Sprint(i)), HTTPAddr: https[i], RaftAddr: rafts[i],
			BootstrapExpect: 3, Join: join,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, id := servers[0].Raft().LeaderWithID(); id != "" {
			return servers
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBlobsBesideRaft: a blob stored on one server is served by another,
// which fetches it from its peer; a blob whose content does not match its
// hash is refused.
func TestBlobsBesideRaft(t *testing.T) {
	servers := cluster(t)
	content := bytes.Repeat([]byte("bundle "), 10000)
	sum := sha256.Sum256(content)
	hexsum := hex.EncodeToString(sum[:])
	put := func(addr, h string, body []byte) int {
		req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/blobs/sha256/"+h, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put(servers[0].Addr(), hexsum, content); code != 200 {
		t.Fatalf("store: %d", code)
	}
	if code := put(servers[0].Addr(), strings.Repeat("0", 64), content); code != 400 {
		t.Errorf("a blob under the wrong hash: %d, want 400", code)
	}
	resp, err := http.Get("http://" + servers[2].Addr() + "/v1/blobs/sha256/" + hexsum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Fatalf("another server served %d bytes with %d", len(got), resp.StatusCode)
	}
	resp, err = http.Get("http://" + servers[1].Addr() + "/v1/blobs/sha256/" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("an unknown blob: %d, want 404", resp.StatusCode)
	}
}
