package example;

import dev.butter.ButterException;
import dev.butter.Context;
import dev.butter.Handler;
import java.util.List;
import java.util.Map;

/** Greets the route's {name}; refuses a name longer than 40 characters. */
public class Greet implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) throws ButterException {
        String name = ctx.params().getOrDefault("name", "world");
        if (name.length() > 40) {
            throw ButterException.preconditionFailed("a name is at most 40 characters");
        }
        String greeting = "Hello, " + name + "!";
        Context.Request req = ctx.request();
        if (req != null && req.query().getOrDefault("shout", List.of()).contains("1")) {
            greeting = greeting.toUpperCase();
        }
        ctx.log("info", "greeted " + name);
        ctx.response().setHeader("X-Greeter", "java");
        return Map.of("greeting", greeting);
    }
}
