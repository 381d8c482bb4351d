package dev.butter;

/**
 * A context call failed: the pool refused it ({@link #type} is null: an
 * undeclared stream or call target), or, for {@link Context#call}, the
 * callee failed ({@code PreconditionFailed}, {@code Exception}, ...), no
 * reply came in time ({@code Timeout}), its circuit breaker is open
 * ({@code CircuitOpen}) or it could not be sent ({@code Unavailable}).
 * Not caught, it fails the handler as an {@code Exception}, never with the
 * callee's type.
 */
public class CallException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String target;
    private final String type;

    public CallException(String target, String type, String message) {
        super(type != null && !type.isEmpty() ? target + ": " + type + ": " + message : target + ": " + message);
        this.target = target;
        this.type = type == null || type.isEmpty() ? null : type;
    }

    /** The stream or call target, or the op ("log") that failed. */
    public String target() {
        return target;
    }

    /** The callee's error type, or null when the pool refused the call. */
    public String type() {
        return type;
    }
}
