public class Echo {}
