package example;

import dev.butter.Context;
import dev.butter.Handler;
import java.util.Map;

/** Counts visits per user: the state block's key is the route's {user}. */
public class Visits implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) {
        Object s = ctx.state().get();
        long n = s instanceof Map<?, ?> m && m.get("visits") instanceof Number v ? v.longValue() : 0;
        ctx.state().set(Map.of("visits", n + 1));
        return Map.of("user", ctx.state().key(), "visits", n + 1);
    }
}
