package dev.butter;

import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What a handler knows about its call, and its calls back into the pool:
 * logging, emitting to streams, calling a function or stream and awaiting
 * its reply, per-key state, the HTTP request and response. The same API as
 * the Node, Python and Go SDKs (docs/worker-protocol.md).
 */
public final class Context {
    private final Worker.Calls calls;
    private final int index; // the event's index in a batch, -1 otherwise
    private final String function;
    private final Map<String, String> options;
    private final Map<String, String> meta;
    private final Map<String, String> params;
    private final long deadline; // Unix ms, 0: none
    private final State state;
    private final Response response = new Response();
    private final Request request;
    private int emits;

    Context(Worker.Calls calls, int index, String function, Map<String, String> options, Map<String, String> meta, long deadline, State state) {
        this.calls = calls;
        this.index = index;
        this.function = function;
        this.options = Collections.unmodifiableMap(options);
        this.meta = Collections.unmodifiableMap(meta);
        Map<String, String> p = new TreeMap<>();
        meta.forEach((k, v) -> {
            if (k.startsWith("param.")) {
                p.put(k.substring(6), v);
            }
        });
        this.params = Collections.unmodifiableMap(p);
        this.deadline = deadline;
        this.state = state;
        this.request = meta.containsKey("ce_httpmethod") ? new Request(meta, params) : null;
    }

    /** The function's name. */
    public String function() {
        return function;
    }

    /** A pipeline step's options. */
    public Map<String, String> options() {
        return options;
    }

    /**
     * The call's metadata: HTTP headers (lower-case), {@code param.<name>},
     * CloudEvents attributes ({@code ce_id}, {@code ce_subject}, ...).
     */
    public Map<String, String> meta() {
        return meta;
    }

    /** Route and query parameters, names lower-case. */
    public Map<String, String> params() {
        return params;
    }

    /** The event's id ({@code ce_id}): a request id, or a stream event's id. */
    public String eventId() {
        return meta.get("ce_id");
    }

    /** The event's subject ({@code ce_subject}): a stream record's key. */
    public String subject() {
        return meta.get("ce_subject");
    }

    /** The W3C traceparent of the call, for the handler's own outgoing calls. */
    public String traceparent() {
        return meta.get("ce_traceparent");
    }

    /** The HTTP request the call came from, or null for another event. */
    public Request request() {
        return request;
    }

    /** The status and headers of the answer to an HTTP call. */
    public Response response() {
        return response;
    }

    /** The function's per-key state (a function with a state block). */
    public State state() {
        return state;
    }

    /** Milliseconds left before the call's deadline; Long.MAX_VALUE without one. */
    public long remainingMillis() {
        return deadline == 0 ? Long.MAX_VALUE : Math.max(0, deadline - System.currentTimeMillis());
    }

    /** Whether the pool cancelled the call (its deadline passed, or its caller went away). */
    public boolean cancelled() {
        return calls.cancelled;
    }

    /** Logs message at level (debug, info, warn, error) in the function's log. */
    public void log(String level, String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("op", "log");
        m.put("level", level);
        m.put("message", message);
        checked("log", m);
    }

    /** Emits value to a stream the function's spec lists (output or emits). */
    public void emit(String stream, Object value) {
        emit(stream, null, value);
    }

    /** Emits value with a record key to a stream the function's spec lists. */
    public void emit(String stream, String key, Object value) {
        int n;
        synchronized (this) {
            n = ++emits;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("op", "emit");
        m.put("stream", stream);
        m.put("number", n);
        if (key != null) {
            m.put("key", key);
        }
        m.put("value", Base64.getEncoder().encodeToString(Worker.toBytes(value)));
        checked(stream, m);
    }

    /**
     * Sends value to a function or stream of the spec's {@code calls} and
     * waits for its reply, until the call's own deadline.
     */
    public byte[] call(String target, Object value) {
        return call(target, null, value, 0);
    }

    /**
     * Sends value, with a record key, to a call target and waits for its
     * reply at most timeoutMillis (0: until the call's deadline).
     */
    public byte[] call(String target, String key, Object value, long timeoutMillis) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("op", "call");
        m.put("target", target);
        if (key != null) {
            m.put("key", key);
        }
        if (timeoutMillis < 0) {
            throw new IllegalArgumentException("butter: call: timeout " + timeoutMillis + " ms is negative");
        }
        if (timeoutMillis > 0) {
            m.put("timeout_ms", timeoutMillis);
        }
        m.put("value", Base64.getEncoder().encodeToString(Worker.toBytes(value)));
        Map<String, Object> reply = send(m);
        if (!Boolean.TRUE.equals(reply.get("ok"))) {
            throw new CallException(target, (String) reply.get("error_type"), String.valueOf(reply.getOrDefault("error", "context call failed")));
        }
        Object v = reply.get("value");
        return v == null ? new byte[0] : Base64.getDecoder().decode((String) v);
    }

    private void checked(String what, Map<String, Object> m) {
        Map<String, Object> reply = send(m);
        if (!Boolean.TRUE.equals(reply.get("ok"))) {
            throw new CallException(what, null, String.valueOf(reply.getOrDefault("error", "context call failed")));
        }
    }

    private Map<String, Object> send(Map<String, Object> m) {
        if (index >= 0) {
            m.put("index", index);
        }
        return calls.call(m);
    }

    /** The HTTP request a call came from (docs/gateway.md, "The HTTP contract"). */
    public static final class Request {
        private final String method, path, route, rawQuery, remoteAddr;
        private final Map<String, String> headers;
        private final Map<String, String> params;
        private final Map<String, List<String>> query = new LinkedHashMap<>();

        Request(Map<String, String> meta, Map<String, String> params) {
            this.method = meta.get("ce_httpmethod");
            this.path = meta.getOrDefault("ce_httppath", "");
            this.route = meta.get("ce_httproute");
            this.rawQuery = meta.getOrDefault("ce_httpquery", "");
            this.remoteAddr = meta.get("ce_httpremoteaddr");
            this.params = params;
            Map<String, String> h = new TreeMap<>();
            try {
                Object o = Json.parse(meta.getOrDefault("ce_httpheaders", "{}"));
                if (o instanceof Map<?, ?> mm) {
                    mm.forEach((k, v) -> h.put(String.valueOf(k), String.valueOf(v)));
                }
            } catch (IllegalArgumentException ignored) {
                // no headers
            }
            this.headers = Collections.unmodifiableMap(h);
            for (String pair : rawQuery.split("&")) {
                if (pair.isEmpty()) {
                    continue;
                }
                int eq = pair.indexOf('=');
                String k = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
                String v = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
                query.computeIfAbsent(k, x -> new ArrayList<>()).add(v);
            }
        }

        public String method() { return method; }
        public String path() { return path; }
        /** The matched route's pattern ("PUT /things/{id}"), or null. */
        public String route() { return route; }
        public String rawQuery() { return rawQuery; }
        /** The query, each name to its values. */
        public Map<String, List<String>> query() { return query; }
        /** Headers, names lower-case, repeated values joined by ", ". */
        public Map<String, String> headers() { return headers; }
        public Map<String, String> params() { return params; }
        public String remoteAddr() { return remoteAddr; }
    }

    /**
     * The status and headers of the answer to an HTTP call, sent before
     * the output when the handler returns without an exception.
     */
    public static final class Response {
        private int status;
        private final Map<String, Map.Entry<String, List<String>>> headers = new LinkedHashMap<>();

        public synchronized Response status(int status) {
            this.status = status;
            return this;
        }

        public synchronized Response setHeader(String name, String value) {
            List<String> vs = new ArrayList<>();
            vs.add(value);
            headers.put(name.toLowerCase(), Map.entry(name, vs));
            return this;
        }

        public synchronized Response addHeader(String name, String value) {
            Map.Entry<String, List<String>> h = headers.get(name.toLowerCase());
            if (h == null) {
                return setHeader(name, value);
            }
            h.getValue().add(value);
            return this;
        }

        synchronized String head() {
            if (status == 0 && headers.isEmpty()) {
                return null;
            }
            Map<String, Object> hs = new LinkedHashMap<>();
            headers.values().forEach(e -> hs.put(e.getKey(), e.getValue()));
            Map<String, Object> head = new LinkedHashMap<>();
            head.put("headers", hs);
            if (status != 0) {
                head.put("status", status);
            }
            return Json.write(head);
        }
    }

    /**
     * The per-key state of a function with a state block (docs/state.md):
     * {@code get} returns the key's state as parsed JSON (null when there is
     * none), {@code set} replaces it, {@code delete} removes it. The change
     * is kept only if the handler succeeds.
     */
    public static final class State {
        private final String function;
        private final Map<?, ?> m;
        private final String key;
        private String value; // JSON text, null: none
        private boolean changed;

        State(String function, Map<?, ?> m) {
            this.function = function;
            this.m = m;
            Object k = m == null ? null : m.get("key");
            this.key = k == null || "".equals(k) ? null : String.valueOf(k);
            Object v = m == null ? null : m.get("value");
            this.value = v == null ? null : Json.write(v);
        }

        /** The call's state key, or null. */
        public String key() {
            return key;
        }

        public synchronized Object get() {
            return value == null ? null : Json.parse(value);
        }

        public synchronized void set(Object v) {
            if (m == null) {
                throw new IllegalStateException("butter: state: function " + function + " has no state block");
            }
            if (key == null) {
                throw new IllegalStateException("butter: state: this call has no state key (the event has no \"" + m.get("field") + "\" field, no record key and no Butter-State-Key header)");
            }
            value = v == null ? null : Json.write(v);
            changed = true;
        }

        public void delete() {
            set(null);
        }

        /** The RESULT's "state" as JSON text, or null when unchanged. */
        synchronized String result() {
            if (!changed) {
                return null;
            }
            return value == null ? "{\"deleted\":true}" : "{\"value\":" + value + "}";
        }
    }
}
