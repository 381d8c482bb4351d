import dev.butter.Context;
import dev.butter.Handler;

/** The benchmarks' Java echo: answers its input unchanged. */
public class Echo implements Handler {
    @Override
    public Object handle(Context ctx, byte[] input) {
        return input;
    }
}
