import dev.butter.ButterException;
import dev.butter.CallException;
import dev.butter.Context;
import dev.butter.Handler;
import dev.butter.Json;
import dev.butter.Outputs;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

// Test functions of the Java SDK (plugins/pool TestJava).
class Fns {
    private Fns() {}
}

/** Echoes its input; "created" answers 201 with a Location header; logs. */
class Echo implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) {
        String in = new String(input, StandardCharsets.UTF_8);
        ctx.log("warn", "java echo got " + in.length() + " bytes");
        if (in.equals("created")) {
            ctx.response().status(201).setHeader("Location", "/things/7").addHeader("X-Java", "a").addHeader("X-Java", "b");
        }
        if (in.equals("params")) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("params", ctx.params());
            m.put("function", ctx.function());
            m.put("remaining_positive", ctx.remainingMillis() > 0);
            return m;
        }
        if (in.equals("nothing")) {
            return null;
        }
        if (in.equals("outputs")) {
            return Outputs.of("a", Outputs.keyed("k", Map.of("n", 1)));
        }
        if (in.equals("sleep")) {
            try {
                Thread.sleep(300);
            } catch (InterruptedException e) {
                return "interrupted";
            }
        }
        return input;
    }
}

/** Fails by its input: the type, or a plain exception. */
class Fail implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) throws Exception {
        String in = new String(input, StandardCharsets.UTF_8);
        switch (in) {
            case "refuse":
                throw ButterException.preconditionFailed("java refuses " + in);
            case "custom":
                throw new ButterException("Overheated", "too hot");
            default:
                throw new IllegalStateException("java broke on " + in);
        }
    }
}

/** Counts calls per state key; {"op":"delete"} deletes. */
class Counter implements Handler {
    @Override
    @SuppressWarnings("unchecked")
    public Object handle(Context ctx, byte[] input) {
        Map<String, Object> in = (Map<String, Object>) Json.parse(input);
        if ("delete".equals(in.get("op"))) {
            ctx.state().delete();
            return Map.of("deleted", true);
        }
        Map<String, Object> s = (Map<String, Object>) ctx.state().get();
        long n = s == null ? 0 : ((Number) s.get("n")).longValue();
        ctx.state().set(Map.of("n", n + 1));
        return Map.of("key", ctx.state().key(), "n", n + 1);
    }
}

/** Emits its input to "out" twice, keyed, and to an undeclared stream. */
class Emit implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) {
        ctx.emit("out", "k1", input);
        ctx.emit("out", "k2", Map.of("again", new String(input, StandardCharsets.UTF_8)));
        try {
            ctx.emit("nowhere", input);
            return "emitted to nowhere";
        } catch (CallException e) {
            return "refused: " + e.getMessage();
        }
    }
}
