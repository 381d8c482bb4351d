package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ProjectFunctions answers GET /v1/projects/{name}/functions: the active
// revision's functions with what triggers them, where they write and
// their signals, and the project's streams between them (what the web
// UI draws).
type ProjectFunctions struct {
	Project  string `json:"project"`
	Revision string `json:"revision"`
	// Streams are the project's streams (their stream blocks).
	Streams []StreamInfo `json:"streams"`
	// Functions are sorted by name.
	Functions []FunctionInfo `json:"functions"`
	// Stale says the answering node was not the leader (which alone runs
	// the autoscaler that reads the signals on Nomad).
	Stale bool `json:"stale"`
}

// StreamInfo is one of a project's streams.
type StreamInfo struct {
	Name       string `json:"name"`
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
}

// FunctionInfo is one function of a revision.
type FunctionInfo struct {
	Function string `json:"function"`
	Pool     string `json:"pool"`
	Runtime  string `json:"runtime"`
	// Routes are its HTTP routes ("POST /devices/{device}/readings"),
	// those of pipelines it is a step of included.
	Routes []string `json:"routes,omitempty"`
	// Schedules are its cron triggers' schedules.
	Schedules []string `json:"schedules,omitempty"`
	// Queued says it takes queued or async calls (its request topic).
	Queued bool `json:"queued,omitempty"`
	// Inputs are the topics of the streams it consumes; Output the topic
	// its return value goes to; Emits the other topics it may emit to;
	// DeadLetters the topics its failed events go to.
	Inputs      []string `json:"inputs,omitempty"`
	Output      string   `json:"output,omitempty"`
	Emits       []string `json:"emits,omitempty"`
	DeadLetters []string `json:"dead_letters,omitempty"`
	// Signals are its instances, calls and traffic as the control plane
	// last read them (the autoscaler on Nomad, butter dev's own reading);
	// nil when none were read.
	Signals *FunctionSignals `json:"signals,omitempty"`
}

// DeadLetterList answers GET
// /v1/projects/{name}/functions/{function}/deadletters.
type DeadLetterList struct {
	Project  string `json:"project"`
	Function string `json:"function"`
	// Topics are the function's dead-letter topics that were read.
	Topics []string `json:"topics"`
	// DeadLetters are the newest first.
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// DeadLetter is one record of a dead-letter topic.
type DeadLetter struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	// ID is the event's ce_id; Key its record key as text.
	ID  string `json:"id,omitempty"`
	Key string `json:"key,omitempty"`
	// Value is the event's data as text when it is UTF-8, else
	// ValueBase64 holds it.
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
	// Function is the function that failed it (ce_errorfunction; "" on a
	// dead letter written before pools named it).
	Function string `json:"function,omitempty"`
	// ErrorType, ErrorMessage and ErrorDetails are ce_errortype,
	// ce_errormessage and ce_errordetails (a JSON array, for schema
	// failures); Attempts is ce_attempts.
	ErrorType    string `json:"error_type,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	ErrorDetails string `json:"error_details,omitempty"`
	Attempts     int    `json:"attempts"`
	// Origin is where the event was when it failed (ce_origintopic:
	// topic/partition/offset): where a replay writes it again.
	Origin string `json:"origin,omitempty"`
	// Headers are all the record's headers.
	Headers map[string]string `json:"headers,omitempty"`
}

// ReplayRequest is the body of POST
// /v1/projects/{name}/functions/{function}/deadletters/replay: the dead
// letter to write back to where it failed.
type ReplayRequest struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// ReplayResponse says where the replayed event was written.
type ReplayResponse struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// From is the dead letter, topic/partition/offset (the replayed
	// event's ce_replayedfrom).
	From string `json:"from"`
}

// Functions returns the active revision's functions, their streams and
// signals. A project without a revision is a 404 *StatusError.
func (p *Projects) Functions(ctx context.Context, project string, q *QueryOptions) (*ProjectFunctions, error) {
	var out ProjectFunctions
	if _, err := p.c.query(ctx, "/v1/projects/"+seg(project)+"/functions", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeadLetters returns the newest records (at most limit per dead-letter
// topic; 0 is the server's default) of a function's dead-letter topics
// that are this function's.
func (p *Projects) DeadLetters(ctx context.Context, project, function string, limit int) (*DeadLetterList, error) {
	r := request{method: http.MethodGet, path: "/v1/projects/" + seg(project) + "/functions/" + seg(function) + "/deadletters"}
	if limit > 0 {
		r.params = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	resp, err := p.c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out DeadLetterList
	if err := decode(resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Replay writes a dead letter of the function back to the topic,
// partition it failed on, without its error headers: every function
// reading that stream gets it again.
func (p *Projects) Replay(ctx context.Context, project, function string, dl ReplayRequest) (*ReplayResponse, error) {
	var out ReplayResponse
	err := p.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/functions/"+seg(function)+"/deadletters/replay", &dl, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
