// Amazon Cognito's user pool API, called from the browser (no SDK): the JSON protocol
// with an X-Amz-Target header. Unauthenticated calls; the app client must allow
// USER_PASSWORD_AUTH and REFRESH_TOKEN_AUTH.

import { config } from "./api.js";

const WORDS = {
  NotAuthorizedException: "Wrong email or password.",
  UserNotFoundException: "Wrong email or password.",
  UserNotConfirmedException: "This account is not confirmed yet: enter the code we emailed you.",
  UsernameExistsException: "An account with this email already exists. Sign in instead.",
  CodeMismatchException: "That confirmation code is not right. Check the email and try again.",
  ExpiredCodeException: "That code has expired. Ask for a new one below.",
  InvalidPasswordException: null, // Cognito's own words say which rule the password breaks
  InvalidParameterException: null,
  TooManyRequestsException: "Too many attempts. Wait a minute, then try again.",
  LimitExceededException: "Too many attempts. Wait a minute, then try again.",
  TooManyFailedAttemptsException: "Too many attempts. Wait a minute, then try again.",
  UserLambdaValidationException: null, // the sign-up trigger's sentence, as it wrote it
};

// What a refusal means depends on the call: "Wrong email or password." was said of a
// confirm (which has no password), of an account already confirmed, of a disabled one
// and of a locked-out one, each a NotAuthorizedException with its own message.
const WORDS_BY_CALL = {
  InitiateAuth: {
    NotAuthorizedException: (message) =>
      /incorrect username or password/i.test(message || "") ? "Wrong email or password." : message,
  },
  ConfirmSignUp: {
    NotAuthorizedException: (message) =>
      /current status is confirmed/i.test(message || "")
        ? "This account is confirmed already: sign in."
        : message,
    UserNotFoundException: () => "No account has this email: sign up first.",
  },
  ResendConfirmationCode: {
    NotAuthorizedException: (message) => message,
    UserNotFoundException: () => "No account has this email: sign up first.",
    InvalidParameterException: (message) =>
      /already confirmed/i.test(message || "") ? "This account is confirmed already: sign in." : message,
  },
};
// Past this, a call that has not answered is given up: a Cognito that hung kept the
// form's button disabled, with no word, for as long as it hung.
const CALL_TIMEOUT_MS = 15_000;

export class CognitoError extends Error {
  constructor(type, message, action = "") {
    const byCall = WORDS_BY_CALL[action]?.[type];
    const words = byCall ? byCall(message) : WORDS[type];
    super(words || message || `Cognito refused the request (${type || "no reason given"}).`);
    this.type = type;
  }
}

async function call(action, body) {
  let response;
  try {
    response = await fetch(config.cognito.url + "/", {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": `AWSCognitoIdentityProviderService.${action}`,
      },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch {
    throw new CognitoError("", "Cannot reach the sign-in service. Check your connection.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const type = String(data.__type || data.code || "").split("#").pop();
    throw new CognitoError(type, data.message || data.Message, action);
  }
  return data;
}

const clientId = () => config.cognito.clientId;

export async function signIn(email, password) {
  const data = await call("InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH",
    ClientId: clientId(),
    AuthParameters: { USERNAME: email, PASSWORD: password },
  });
  if (!data.AuthenticationResult) {
    throw new CognitoError("", `This account needs a step the page cannot do yet (${data.ChallengeName}).`);
  }
  return data.AuthenticationResult;
}

export async function refresh(refreshToken) {
  const data = await call("InitiateAuth", {
    AuthFlow: "REFRESH_TOKEN_AUTH",
    ClientId: clientId(),
    AuthParameters: { REFRESH_TOKEN: refreshToken },
  });
  return data.AuthenticationResult;
}

// The user's attributes (preferred_username = the Cruddur handle, name), by access token.
export async function profile(accessToken) {
  const data = await call("GetUser", { AccessToken: accessToken });
  return Object.fromEntries((data.UserAttributes || []).map((a) => [a.Name, a.Value]));
}

export function signUp({ email, password, name, handle }) {
  return call("SignUp", {
    ClientId: clientId(),
    Username: email,
    Password: password,
    UserAttributes: [
      { Name: "email", Value: email },
      { Name: "name", Value: name },
      { Name: "preferred_username", Value: handle },
    ],
  });
}

export function confirm(email, code) {
  return call("ConfirmSignUp", { ClientId: clientId(), Username: email, ConfirmationCode: code });
}

export function resendCode(email) {
  return call("ResendConfirmationCode", { ClientId: clientId(), Username: email });
}
