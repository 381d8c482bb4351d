import dev.butter.CallException;
import dev.butter.Context;
import dev.butter.Handler;
import dev.butter.Json;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Calls the target its JSON input names ({"target", "value", "timeout_ms"})
 * with ctx.call and answers {"ok": reply} or {"error": {type, message,
 * name}}, the error as the handler caught it (as callfn's main.py).
 */
public class Call implements Handler {
    @Override
    @SuppressWarnings("unchecked")
    public Object handle(Context ctx, byte[] input) {
        Map<String, Object> req = (Map<String, Object>) Json.parse(input);
        long timeout = req.get("timeout_ms") instanceof Number n ? n.longValue() : 0;
        try {
            byte[] reply = ctx.call((String) req.get("target"), null, req.get("value"), timeout);
            return Map.of("ok", new String(reply, StandardCharsets.UTF_8));
        } catch (CallException e) {
            Map<String, Object> err = new LinkedHashMap<>();
            err.put("type", e.type());
            err.put("message", e.getMessage());
            err.put("name", "CallError");
            return Map.of("error", err);
        }
    }
}
