package dev.butter;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Several outputs of one call: each becomes a record of the function's
 * output stream with its own id (docs/events.md, "Outputs"). Items are as
 * a returned value ({@code byte[]}, {@code String}, anything else as
 * JSON); {@link #keyed} gives one its own record key. Return
 * {@code Outputs.of(a, b)} from the handler.
 */
public final class Outputs {
    final List<Object> items;

    private Outputs(List<Object> items) {
        this.items = items;
    }

    public static Outputs of(Object... items) {
        return new Outputs(List.of(items));
    }

    public static Outputs of(List<?> items) {
        return new Outputs(new ArrayList<>(items));
    }

    /** An output with its own record key. */
    public static Object keyed(String key, Object value) {
        return new Keyed(key, value);
    }

    record Keyed(String key, Object value) {}

    /** The outputs envelope: {"butter.outputs": [{value|text|base64, key?}, ...]}. */
    byte[] envelope() {
        List<Object> out = new ArrayList<>();
        for (Object v : items) {
            Map<String, Object> item = new LinkedHashMap<>();
            if (v instanceof Keyed k) {
                item.put("key", k.key());
                v = k.value();
            }
            if (v instanceof byte[] b) {
                item.put("base64", Base64.getEncoder().encodeToString(b));
            } else if (v instanceof String s) {
                item.put("text", s);
            } else {
                item.put("value", v);
            }
            out.add(item);
        }
        return Json.write(Map.of("butter.outputs", out)).getBytes(StandardCharsets.UTF_8);
    }
}
