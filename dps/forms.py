"""Forms check the shape of input; services enforce the rules. Messages say what to do."""
from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovPasswordInput,
    GovSelect,
    GovSubmitInput,
    GovTextInput,
)
from wtforms import DateField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import Email, InputRequired, Length, ValidationError


class LondonDateField(DateField):
    """Day, month and year boxes (GOV.UK date input), with a message people understand."""

    def process_formdata(self, valuelist):
        if len(valuelist) != 3:
            # The widget redraws exactly three boxes from raw_data; a request that sent some other
            # number (only a hand-made one can) is treated as whatever it did send, padded.
            valuelist = (list(valuelist) + ["", "", ""])[:3]
            self.raw_data = valuelist
        if valuelist and any(v.strip() for v in valuelist):
            try:
                super().process_formdata([" ".join(v.strip() for v in valuelist)])
            except ValueError:
                self.data = None
                raise ValueError("Enter a real date, like 27 6 2024") from None


def single_line(form, field) -> None:
    """No line breaks or other control characters in a one-line answer: a name ends up in email
    subjects, logs and exports, where a line break would be read as something else."""
    if field.data and any(ord(c) < 32 or ord(c) == 127 for c in field.data):
        raise ValidationError(f"{field.label.text} must be on one line, without special characters")


def email_field(label: str = "Email address", hint: str | None = None) -> EmailField:
    return EmailField(
        label,
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter an email address"),
            Length(max=320, message="Email address must be 320 characters or fewer"),
            Email(message="Enter an email address in the correct format, like name@example.org",
                  check_deliverability=False),
        ],
        description=hint or "",
    )


def name_field(label: str = "Full name", message: str = "Enter the person's full name") -> StringField:
    return StringField(label, widget=GovTextInput(),
                       validators=[InputRequired(message=message), Length(max=200, message="Name must be 200 characters or fewer"),
                                   single_line])


def new_password_field(label: str = "Create a password") -> PasswordField:
    return PasswordField(
        label,
        widget=GovPasswordInput(),
        validators=[InputRequired(message="Enter a password")],
        description="Use 12 characters or more. Three or more random words are easy to remember and hard to guess.",
    )


class SignInForm(FlaskForm):
    email = email_field()
    password = PasswordField("Password", widget=GovPasswordInput(), validators=[InputRequired(message="Enter your password")])
    submit = SubmitField("Sign in", widget=GovSubmitInput())


class ForgottenPasswordForm(FlaskForm):
    email = email_field(hint="We will email you a link to choose a new password.")
    submit = SubmitField("Send the link", widget=GovSubmitInput())


class ResendConfirmationForm(FlaskForm):
    email = email_field()
    submit = SubmitField("Send the confirmation link again", widget=GovSubmitInput())


class SetPasswordForm(FlaskForm):
    password = new_password_field()
    submit = SubmitField("Save password", widget=GovSubmitInput())


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", widget=GovPasswordInput(),
                                     validators=[InputRequired(message="Enter your current password")])
    password = new_password_field("New password")
    submit = SubmitField("Change password", widget=GovSubmitInput())


class ConfirmForm(FlaskForm):
    """A form with only a button: for actions that change state (never on GET)."""

    submit = SubmitField("Continue", widget=GovSubmitInput())


class InviteColleagueForm(FlaskForm):
    name = name_field("Your colleague's full name", "Enter your colleague's full name")
    email = email_field("Your colleague's email address")
    submit = SubmitField("Send invitation", widget=GovSubmitInput())


class SupplierSignUpForm(FlaskForm):
    organisation_name = StringField(
        "Name of your organisation", widget=GovTextInput(),
        description="Its legal name, as registered. You can add its details when you apply.",
        validators=[InputRequired(message="Enter the name of your organisation"),
                    Length(max=200, message="Organisation name must be 200 characters or fewer"), single_line])
    name = name_field("Your full name", "Enter your full name")
    email = email_field("Your email address", hint="We will send you a link to confirm it.")
    password = new_password_field()
    submit = SubmitField("Create account", widget=GovSubmitInput())


class NewBuyerForm(FlaskForm):
    organisation = SelectField("Organisation", widget=GovSelect(), coerce=int,
                               validators=[InputRequired(message="Select the buyer's organisation")])
    name = name_field()
    email = email_field()
    submit = SubmitField("Create account and send invitation", widget=GovSubmitInput())


class ClockForm(FlaskForm):
    moment = StringField(
        "Move the clock on to", widget=GovTextInput(),
        description="Date and time in UK time, for example 2024-04-15 09:00",
        validators=[InputRequired(message="Enter the date and time to move the clock to")])
    submit = SubmitField("Move the clock on", widget=GovSubmitInput())
