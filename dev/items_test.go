package dev_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestItemsExampleUnderDev runs examples/items under butter dev, as the
// README's quick start does: POST /items answers 201 Created with the
// item's Location, its Content-Type and the item; a body without a name
// keeps its typed answer, 422 PreconditionFailed.
func TestItemsExampleUnderDev(t *testing.T) {
	dir := t.TempDir() // butter dev may write beside the spec: not in the repository
	if err := os.CopyFS(dir, os.DirFS("../examples/items")); err != nil {
		t.Fatal(err)
	}
	listen := testport.Addr(t)
	runDev(t, dev.Config{Dir: dir, Listen: listen})

	resp, err := http.Post("http://"+listen+"/items", "application/json", strings.NewReader(`{"name":"pear","colour":"green"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var item map[string]any
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/items/pear" || json.Unmarshal(b, &item) != nil {
		t.Fatalf("POST /items: %s Location %q %s, want 201 Created, /items/pear, the item", resp.Status, resp.Header.Get("Location"), b)
	}
	if want := map[string]any{"name": "pear", "colour": "green", "created": true}; !reflect.DeepEqual(item, want) {
		t.Errorf("POST /items: %v, want %v", item, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST /items: Content-Type %q, want the function's application/json", ct)
	}

	resp, err = http.Post("http://"+listen+"/items", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "PreconditionFailed") || resp.Header.Get("Location") != "" {
		t.Errorf("POST /items without a name: %s %s, want 422 PreconditionFailed and no Location", resp.Status, b)
	}
}
