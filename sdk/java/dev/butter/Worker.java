package dev.butter;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * The Java worker: loads the handler class ({@code BUTTER_HANDLER}) and
 * serves the worker protocol, versions 1 to 3 (docs/worker-protocol.md), on
 * fd 3 (pool to worker) and fd 4 (worker to pool). The pool runs
 * {@code java -cp <sdk>:<function> dev.butter.Worker}. Standard library only.
 */
public final class Worker {
    static final int HELLO = 1, INVOKE = 2, DATA = 3, END = 4, RESULT = 5, CANCEL = 6, CALL = 7, REPLY = 8, BATCH = 9, RESULTS = 10, HEAD = 11;
    static final int PROTOCOL = 3;
    static final int MAX_FRAME = 16 << 20;
    static final int CHUNK = 1 << 20;

    private static OutputStream out;
    private static int protocol = 1;

    private Worker() {}

    static void die(int code, String message) {
        System.out.flush();
        System.err.println("butter worker: " + message);
        System.err.flush();
        Runtime.getRuntime().halt(code);
    }

    /** Writes one whole frame to fd 4; safe from any thread. */
    static void send(int type, int id, byte[] payload) {
        ByteBuffer h = ByteBuffer.allocate(9);
        h.putInt(5 + payload.length).put((byte) type).putInt(id);
        synchronized (Worker.class) {
            try {
                out.write(h.array());
                out.write(payload);
                out.flush();
            } catch (IOException e) {
                die(1, "writing fd 4: " + e);
            }
        }
    }

    static void send(int type, int id, String payload) {
        send(type, id, payload.getBytes(StandardCharsets.UTF_8));
    }

    /** A returned value as bytes: see {@link Handler}. */
    static byte[] toBytes(Object v) {
        if (v == null) {
            return new byte[0];
        }
        if (v instanceof byte[] b) {
            return b;
        }
        if (v instanceof String s) {
            return s.getBytes(StandardCharsets.UTF_8);
        }
        if (v instanceof Outputs o) {
            return o.envelope();
        }
        return Json.write(v).getBytes(StandardCharsets.UTF_8);
    }

    /** The context calls of one invocation or batch: their seq and replies. */
    static final class Calls {
        final int id;
        volatile boolean cancelled;
        volatile Thread thread; // the handler's, interrupted on CANCEL
        private int seq;
        private String closed;
        private final Map<Integer, CompletableFuture<Map<String, Object>>> pending = new HashMap<>();

        Calls(int id) {
            this.id = id;
        }

        Map<String, Object> call(Map<String, Object> m) {
            CompletableFuture<Map<String, Object>> f = new CompletableFuture<>();
            int s;
            synchronized (this) {
                if (closed != null) {
                    return Map.of("ok", false, "error", closed);
                }
                s = ++seq;
                pending.put(s, f);
            }
            Map<String, Object> msg = new LinkedHashMap<>();
            msg.put("seq", s);
            msg.putAll(m);
            send(CALL, id, Json.write(msg));
            try {
                return f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                // The REPLY is still due: wait for it without interruption,
                // as the id must not be freed before it.
                return f.join();
            } catch (Exception e) {
                return Map.of("ok", false, "error", String.valueOf(e));
            }
        }

        void reply(Map<String, Object> r) {
            Object s = r.get("seq");
            CompletableFuture<Map<String, Object>> f;
            synchronized (this) {
                f = s instanceof Number n ? pending.remove(n.intValue()) : null;
            }
            if (f != null) {
                f.complete(r);
            }
        }

        /** Waits for every pending call's REPLY, then refuses new calls. */
        void drain() {
            while (true) {
                CompletableFuture<Map<String, Object>> f;
                synchronized (this) {
                    if (pending.isEmpty()) {
                        if (closed == null) {
                            closed = "context call after the invocation finished";
                        }
                        return;
                    }
                    f = pending.values().iterator().next();
                }
                f.join();
            }
        }

        /** Fails the pending calls and refuses new ones (fd 3 ended). */
        void close(String why) {
            List<CompletableFuture<Map<String, Object>>> fs;
            synchronized (this) {
                closed = why;
                fs = new ArrayList<>(pending.values());
                pending.clear();
            }
            fs.forEach(f -> f.complete(Map.of("ok", false, "error", why)));
        }
    }

    /** An invocation whose input is arriving. */
    static final class Invocation {
        final Calls calls;
        final Map<?, ?> meta;
        final ByteArrayOutputStream input = new ByteArrayOutputStream();
        boolean started;

        Invocation(int id, Map<?, ?> meta) {
            this.calls = new Calls(id);
            this.meta = meta;
        }
    }

    record Outcome(byte[] output, Map<String, Object> error) {}

    static Outcome callHandler(Handler h, Context ctx, byte[] input) {
        try {
            return new Outcome(toBytes(h.handle(ctx, input)), null);
        } catch (Throwable t) {
            Map<String, Object> err = new LinkedHashMap<>();
            String type = t instanceof ButterException b ? b.type() : "Exception";
            err.put("type", type);
            err.put("message", t.getMessage() != null ? t.getMessage() : t.getClass().getName());
            if (type.equals("Exception")) {
                StringWriter w = new StringWriter();
                t.printStackTrace(new PrintWriter(w));
                err.put("detail", w.toString());
            }
            return new Outcome(null, err);
        }
    }

    static Map<String, String> strings(Object o) {
        Map<String, String> m = new LinkedHashMap<>();
        if (o instanceof Map<?, ?> mm) {
            mm.forEach((k, v) -> m.put(String.valueOf(k), v instanceof String s ? s : Json.write(v)));
        }
        return m;
    }

    static void run(Handler h, Map<Integer, Invocation> inflight, String function, Invocation inv, byte[] input) {
        Thread.interrupted(); // a late CANCEL of the thread's last invocation
        Map<?, ?> m = inv.meta;
        long deadline = m.get("deadline") instanceof Number n ? n.longValue() : 0;
        Context.State state = new Context.State(function, m.get("state") instanceof Map<?, ?> sm ? sm : null);
        Context ctx = new Context(inv.calls, -1, function, strings(m.get("options")), strings(m.get("meta")), deadline, state);
        inv.calls.thread = Thread.currentThread();
        Outcome o = callHandler(h, ctx, input);
        inv.calls.thread = null;
        Thread.interrupted(); // a CANCEL's interrupt ends with the handler
        inv.calls.drain();
        if (o.error() == null) {
            String head = protocol >= 3 ? ctx.response().head() : null;
            if (head != null) {
                send(HEAD, inv.calls.id, head);
            }
            byte[] b = o.output();
            for (int off = 0; off < b.length; off += CHUNK) {
                byte[] c = new byte[Math.min(CHUNK, b.length - off)];
                System.arraycopy(b, off, c, 0, c.length);
                send(DATA, inv.calls.id, c);
            }
        }
        inflight.remove(inv.calls.id); // before RESULT: the pool may reuse the id at once
        String result;
        if (o.error() != null) {
            result = Json.write(Map.of("error", o.error()));
        } else {
            String st = state.result();
            result = st == null ? "{}" : "{\"state\":" + st + "}";
        }
        send(RESULT, inv.calls.id, result);
    }

    // A batch's results are written after the first 8, then every 32,
    // every millisecond while the batch runs, and at its end.
    static final int FLUSH_FIRST = 8, FLUSH_EVERY = 32;

    static void runBatch(Handler h, Map<Integer, Invocation> inflight, String function, Invocation inv, byte[] p) {
        Thread.interrupted(); // a late CANCEL of the thread's last invocation
        ByteBuffer b = ByteBuffer.wrap(p);
        List<Map<String, String>> metas = new ArrayList<>();
        List<byte[]> inputs = new ArrayList<>();
        long deadline;
        try {
            deadline = b.getLong();
            int count = b.getInt();
            if (count < 0 || count > p.length) {
                throw new IllegalArgumentException(count + " events in " + p.length + " bytes");
            }
            for (int e = 0; e < count; e++) {
                int pairs = Short.toUnsignedInt(b.getShort());
                Map<String, String> meta = new LinkedHashMap<>();
                for (int i = 0; i < pairs; i++) {
                    byte[] k = new byte[Short.toUnsignedInt(b.getShort())];
                    b.get(k);
                    byte[] v = new byte[b.getInt()];
                    b.get(v);
                    meta.put(new String(k, StandardCharsets.UTF_8), new String(v, StandardCharsets.UTF_8));
                }
                byte[] in = new byte[b.getInt()];
                b.get(in);
                metas.add(meta);
                inputs.add(in);
            }
            if (b.hasRemaining()) {
                throw new IllegalArgumentException(b.remaining() + " bytes after the last event");
            }
        } catch (RuntimeException e) {
            die(2, "malformed BATCH payload: " + e);
            return;
        }
        Results results = new Results(inv.calls.id);
        Thread ticker = new Thread(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) {
                    Thread.sleep(1);
                    results.flush();
                }
            } catch (InterruptedException ignored) {
                // the batch ended
            }
        }, "butter-batch-flush");
        ticker.setDaemon(true);
        ticker.start();
        inv.calls.thread = Thread.currentThread();
        for (int i = 0; i < metas.size(); i++) {
            if (inv.calls.cancelled) {
                results.add(errorResult("Skipped", "the batch was cancelled before this event ran"));
                break;
            }
            Context ctx = new Context(inv.calls, i, function, Map.of(), metas.get(i), deadline, new Context.State(function, null));
            Outcome o = callHandler(h, ctx, inputs.get(i));
            if (o.error() != null) {
                Object detail = o.error().get("detail");
                if (detail != null) {
                    System.err.print(detail); // RESULTS carry no detail: the function's log does
                }
                results.add(errorResult((String) o.error().get("type"), (String) o.error().get("message")));
                break;
            }
            byte[] output = o.output();
            if (output.length > MAX_FRAME - 64) {
                results.add(errorResult("PostconditionFailed", "an output of " + output.length + " bytes is more than one frame carries"));
                break;
            }
            ByteBuffer r = ByteBuffer.allocate(5 + output.length);
            r.put((byte) 0).putInt(output.length).put(output);
            results.add(r.array());
        }
        inv.calls.thread = null;
        Thread.interrupted();
        ticker.interrupt();
        try {
            ticker.join();
        } catch (InterruptedException ignored) {
            Thread.currentThread().interrupt();
        }
        inv.calls.drain();
        inflight.remove(inv.calls.id);
        results.flush();
    }

    static byte[] errorResult(String type, String message) {
        byte[] t = type.getBytes(StandardCharsets.UTF_8), m = message.getBytes(StandardCharsets.UTF_8);
        ByteBuffer r = ByteBuffer.allocate(1 + 2 + t.length + 4 + m.length);
        r.put((byte) 1).putShort((short) t.length).put(t).putInt(m.length).put(m);
        return r.array();
    }

    /** A batch's results, held and written in RESULTS frames. */
    static final class Results {
        final int id;
        final List<byte[]> held = new ArrayList<>();
        int heldBytes, first, limit = FLUSH_FIRST;

        Results(int id) {
            this.id = id;
        }

        synchronized void add(byte[] r) {
            // A RESULTS frame never passes MAX_FRAME (its length counts
            // type, id, first and n, then the results).
            if (!held.isEmpty() && 13 + heldBytes + r.length > MAX_FRAME) {
                flush();
            }
            held.add(r);
            heldBytes += r.length;
            if (held.size() >= limit || heldBytes >= CHUNK) {
                flush();
            }
        }

        synchronized void flush() {
            if (held.isEmpty()) {
                return;
            }
            ByteBuffer f = ByteBuffer.allocate(8 + heldBytes);
            f.putInt(first).putInt(held.size());
            held.forEach(f::put);
            send(RESULTS, id, f.array());
            first += held.size();
            held.clear();
            heldBytes = 0;
            limit = FLUSH_EVERY;
        }
    }

    static Handler loadHandler() {
        String name = System.getenv("BUTTER_HANDLER");
        if (name == null || name.isEmpty()) {
            die(1, "no handler: set the function's handler to the class that implements dev.butter.Handler");
        }
        try {
            Class<?> c = Class.forName(name);
            if (!Handler.class.isAssignableFrom(c)) {
                die(1, "handler " + name + " does not implement dev.butter.Handler");
            }
            var ctor = c.getDeclaredConstructor();
            ctor.setAccessible(true); // a class that is not public will do
            return (Handler) ctor.newInstance();
        } catch (ClassNotFoundException e) {
            die(1, "cannot load handler \"" + name + "\": no class " + name + " on the class path " + System.getProperty("java.class.path"));
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            StringWriter w = new StringWriter();
            e.printStackTrace(new PrintWriter(w));
            die(1, "cannot load handler \"" + name + "\":\n" + w);
        }
        return null;
    }

    static Map<?, ?> parse(byte[] payload, String what) {
        try {
            Object o = Json.parse(payload);
            if (o instanceof Map<?, ?> m) {
                return m;
            }
            throw new IllegalArgumentException("not an object");
        } catch (IllegalArgumentException e) {
            die(2, "malformed " + what + " payload: " + e.getMessage());
            return null;
        }
    }

    public static void main(String[] args) throws Exception {
        Handler h = loadHandler();
        String function = System.getenv().getOrDefault("BUTTER_FUNCTION", "");
        int concurrency = 1;
        try {
            concurrency = Math.max(1, Integer.parseInt(System.getenv().getOrDefault("BUTTER_CONCURRENCY", "1")));
        } catch (NumberFormatException ignored) {
            // 1
        }
        try {
            protocol = Math.max(1, Math.min(PROTOCOL, Integer.parseInt(System.getenv().getOrDefault("BUTTER_PROTOCOL", "1"))));
        } catch (NumberFormatException ignored) {
            protocol = 1;
        }
        DataInputStream in;
        try {
            in = new DataInputStream(new BufferedInputStream(new FileInputStream("/proc/self/fd/3"), 1 << 16));
            out = new FileOutputStream("/proc/self/fd/4");
        } catch (IOException e) {
            die(1, "fds 3 and 4 must be open: " + e);
            return;
        }
        String java = ProcessHandle.current().info().command().orElse("");
        send(HELLO, 0, Json.write(Map.of("protocol", protocol, "sdk", "java/0.1", "executable", java)));

        Map<Integer, Invocation> inflight = new ConcurrentHashMap<>();
        ExecutorService threads = Executors.newFixedThreadPool(concurrency, r -> {
            Thread t = new Thread(r, "butter-invocation");
            t.setDaemon(true);
            return t;
        });
        while (true) {
            int n;
            try {
                n = in.readInt();
            } catch (EOFException e) {
                break; // fd 3 closed: stop
            }
            if (n < 5 || n > MAX_FRAME) {
                die(2, "bad frame length " + n);
            }
            byte[] body = new byte[n];
            try {
                in.readFully(body);
            } catch (EOFException e) {
                die(2, "fd 3 closed inside a frame");
            }
            int type = body[0] & 0xff;
            int id = ByteBuffer.wrap(body, 1, 4).getInt();
            byte[] payload = new byte[n - 5];
            System.arraycopy(body, 5, payload, 0, payload.length);
            Invocation inv = inflight.get(id);
            switch (type) {
                case INVOKE -> {
                    if (inv != null) {
                        die(2, "INVOKE for invocation " + id + ", which is in flight");
                    }
                    inflight.put(id, new Invocation(id, parse(payload, "INVOKE")));
                }
                case DATA -> {
                    if (inv != null && !inv.started) {
                        inv.input.write(payload);
                    }
                }
                case END -> {
                    if (inv != null && !inv.started) {
                        inv.started = true;
                        byte[] input = inv.input.toByteArray();
                        threads.execute(() -> run(h, inflight, function, inv, input));
                    }
                }
                case BATCH -> {
                    if (protocol < 2) {
                        die(2, "unexpected BATCH frame (batch " + id + "): protocol " + protocol + " has none");
                    }
                    if (inv != null) {
                        die(2, "BATCH for id " + id + ", which is in flight");
                    }
                    Invocation b = new Invocation(id, Map.of());
                    b.started = true;
                    inflight.put(id, b);
                    threads.execute(() -> runBatch(h, inflight, function, b, payload));
                }
                case CANCEL -> {
                    if (inv != null && !inv.started && protocol >= 2) {
                        // Its input will not end: drop it, never run it.
                        inflight.remove(id);
                        send(RESULT, id, "{\"error\":{\"type\":\"Skipped\",\"message\":\"cancelled before its input ended\"}}");
                    } else if (inv != null) {
                        inv.calls.cancelled = true;
                        Thread t = inv.calls.thread;
                        if (t != null) {
                            t.interrupt();
                        }
                    }
                }
                case REPLY -> {
                    Map<?, ?> r = parse(payload, "REPLY");
                    if (inv != null) {
                        Map<String, Object> reply = new HashMap<>();
                        r.forEach((k, v) -> reply.put(String.valueOf(k), v));
                        inv.calls.reply(reply);
                    }
                }
                default -> die(2, "unexpected frame type " + type + " (invocation " + id + ")");
            }
        }
        // fd 3 ended: input that never ended can no longer end, and calls can
        // no longer be answered; the started invocations finish, then exit.
        for (Map.Entry<Integer, Invocation> e : inflight.entrySet()) {
            if (!e.getValue().started) {
                inflight.remove(e.getKey());
            }
            e.getValue().calls.close("the pool closed the connection");
        }
        threads.shutdown();
        threads.awaitTermination(1, TimeUnit.DAYS);
        System.out.flush();
        System.exit(0);
    }
}
