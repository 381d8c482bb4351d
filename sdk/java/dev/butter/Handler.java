package dev.butter;

/**
 * A Butter function written in Java: the class named by the spec's
 * {@code handler} implements it and has a public constructor without
 * arguments. One instance serves every call of a worker, up to the
 * function's concurrency at once, so it must be safe for concurrent use.
 *
 * <p>{@code handle} returns the output: a {@code byte[]} as is, a
 * {@code String} as UTF-8, {@code null} as no output (no record on the
 * output stream), {@link Outputs} as several outputs, anything else
 * ({@code Map}, {@code List}, numbers, booleans) as JSON ({@link Json}).
 * A {@link ButterException} fails the call with its type; any other
 * exception fails it as an {@code Exception}, its stack trace in the
 * function's log.
 */
public interface Handler {
    Object handle(Context ctx, byte[] input) throws Exception;
}
